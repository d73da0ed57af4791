// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";

import {INoteFactory} from "../interfaces/INoteFactory.sol";
import {INoteTranche} from "../interfaces/INoteTranche.sol";
import {IServicer} from "../interfaces/IServicer.sol";
import {ICollateralRegistry} from "../interfaces/ICollateralRegistry.sol";

/// @title NoteFactory: creates and wires a note in one transaction
/// @notice See {INoteFactory}. Holds the registry's `NOTE_FACTORY_ROLE`:
///         only notes made here are opened and bound in the registry.
contract NoteFactory is INoteFactory {
    /// @notice Most tranches per note (senior and junior).
    uint256 public constant MAX_TRANCHES = 2;

    address private immutable _trancheImplementation;
    address private immutable _servicerImplementation;
    address private immutable _asset;
    address private immutable _identities;
    ICollateralRegistry private immutable _registry;
    address private immutable _oracle;

    mapping(address => bool) private _noteContracts;

    /// @param trancheImplementation a NoteTranche deployed with this factory's
    ///        asset, identity registry and collateral registry
    /// @param servicerImplementation a Servicer deployed with this factory's
    ///        asset, collateral registry and oracle
    constructor(
        address trancheImplementation,
        address servicerImplementation,
        address asset,
        address identities,
        ICollateralRegistry registry,
        address oracle
    ) {
        if (
            trancheImplementation == address(0) || servicerImplementation == address(0) || asset == address(0)
                || identities == address(0) || address(registry) == address(0) || oracle == address(0)
        ) revert ZeroAddress();
        _trancheImplementation = trancheImplementation;
        _servicerImplementation = servicerImplementation;
        _asset = asset;
        _identities = identities;
        _registry = registry;
        _oracle = oracle;
    }

    /// @inheritdoc INoteFactory
    function createNote(NoteParams calldata p)
        external
        returns (uint256 noteId, address servicer, address[] memory tranches)
    {
        uint256 count = p.tranches.length;
        if (count == 0 || count > MAX_TRANCHES) revert TrancheCountInvalid(count);
        if (p.trustee == address(0) || p.operator == address(0) || p.feeRecipient == address(0)) revert ZeroAddress();
        noteId = _registry.openNote(msg.sender);

        tranches = new address[](count);
        for (uint256 i = 0; i < count; ++i) {
            tranches[i] = Clones.clone(_trancheImplementation);
            _noteContracts[tranches[i]] = true;
        }
        address junior = count > 1 ? tranches[1] : address(0);
        servicer = Clones.cloneWithImmutableArgs(
            _servicerImplementation, abi.encode(noteId, tranches[0], junior, p.operator, p.feeRecipient)
        );
        _noteContracts[servicer] = true;

        for (uint256 i = 0; i < count; ++i) {
            TrancheParams calldata t = p.tranches[i];
            INoteTranche.Terms memory terms = t.terms;
            terms.noteId = noteId;
            INoteTranche(tranches[i]).initialize(
                t.name, t.symbol, msg.sender, servicer, terms, t.dueAt, t.cumulativeBps
            );
        }
        IServicer(servicer).initialize(p.trustee, p.covenants);

        address[] memory operators = new address[](1);
        operators[0] = p.operator;
        _registry.bindNote(noteId, servicer, tranches, operators);
        emit NoteCreated(noteId, msg.sender, servicer, tranches, p.operator, p.feeRecipient, p.trustee);
    }

    /// @inheritdoc INoteFactory
    function implementations() external view returns (address tranche, address servicer) {
        return (_trancheImplementation, _servicerImplementation);
    }

    /// @inheritdoc INoteFactory
    function parties() external view returns (address asset, address identities, address registry, address oracle) {
        return (_asset, _identities, address(_registry), _oracle);
    }

    /// @inheritdoc INoteFactory
    function isNoteContract(address account) external view returns (bool) {
        return _noteContracts[account];
    }
}
