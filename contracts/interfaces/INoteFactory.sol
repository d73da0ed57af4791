// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {INoteTranche} from "./INoteTranche.sol";
import {IServicer} from "./IServicer.sol";

/// @title Note factory: one transaction creates a note fully wired
/// @notice `createNote` opens the note in the collateral registry for the
///         caller (who must hold the registry's issuer role), clones one
///         NoteTranche per tranche and one Servicer, initialises each in the
///         same transaction and binds them in the registry. From then on the
///         note's tranches, servicer (its SPV account), trustee, registry,
///         oracle and fleet id (the note id), operator, amortization
///         schedules and covenant terms are fixed: none of the contracts has
///         a setter for them. Clones are EIP-1167 minimal proxies (OpenZeppelin
///         `Clones`) with no upgrade path; the servicer's note id, tranches,
///         operator and fee recipient are its clone's immutable arguments.
///         The oracle fleet (fleet id = note id, consumer = the servicer) is
///         registered by the oracle's fleet admin afterwards.
interface INoteFactory {
    /// @notice One tranche: terms (its `noteId` is set by the factory) and
    ///         its amortization schedule (empty for a bullet).
    struct TrancheParams {
        string name;
        string symbol;
        INoteTranche.Terms terms;
        uint40[] dueAt;
        uint16[] cumulativeBps;
    }

    /// @notice A note: senior first, then at most one junior.
    struct NoteParams {
        TrancheParams[] tranches;
        address operator; // equity holder, may pledge batches to the note
        address feeRecipient;
        address trustee; // lienholder after default; never zero
        IServicer.CovenantTerms covenants;
    }

    /// @notice Emitted once per note, after every contract is wired: a
    ///         replay rebuilds the wiring from this event alone.
    event NoteCreated(
        uint256 indexed noteId,
        address indexed issuer,
        address indexed servicer,
        address[] tranches,
        address operator,
        address feeRecipient,
        address trustee
    );

    error TrancheCountInvalid(uint256 count);
    error ZeroAddress();

    /// @notice Creates and wires a note; the caller is its issuer.
    function createNote(NoteParams calldata params)
        external
        returns (uint256 noteId, address servicer, address[] memory tranches);

    /// @notice The implementations every note clones.
    function implementations() external view returns (address tranche, address servicer);

    /// @notice The shared contracts every note of this factory uses.
    function parties()
        external
        view
        returns (address asset, address identities, address registry, address oracle);

    /// @notice True for the servicer and tranches of a note this factory created.
    function isNoteContract(address account) external view returns (bool);
}
