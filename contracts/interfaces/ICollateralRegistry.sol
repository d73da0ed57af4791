// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Collateral registry of GPUs pledged to gpucredit notes
/// @notice One registry serves every issuer, so a GPU can be pledged to at
///         most one live note anywhere. GPUs are registered in batches: a
///         batch stores a Merkle root over one leaf per GPU plus the totals
///         an attestor has checked (count, cost), so registering 10,000 GPUs
///         costs a few storage slots, not 10,000. A batch is homogeneous in
///         model and depreciation class; its in-service date is the earliest
///         of its GPUs (conservative: older means more depreciation).
///
///         Anyone holding a proof can void a batch that breaks the rules:
///         a GPU that appears in two live batches (double pledge), twice in
///         one batch, or a leaf that contradicts its batch header. The voided
///         batch stops counting as collateral and its note is marked
///         collateral-deficient.
interface ICollateralRegistry {
    /// @notice Life cycle of a note's collateral pool.
    enum NoteStatus {
        None,
        Open, // pledges accepted, liens held for the note's lenders
        Released, // note repaid: every batch is free again
        SteppedIn // liens transferred to the trustee after a default
    }

    /// @notice Life cycle of a batch.
    enum BatchStatus {
        None,
        Registered, // root and totals recorded, awaiting attestation
        Attested, // an attestor checked the GPUs behind the root
        Pledged, // lien held by a note (live while the note is Open or SteppedIn)
        Voided // caught by a fraud proof; never counts again
    }

    /// @notice What an operator registers for a batch of GPUs.
    struct BatchRegistration {
        address issuer; // the SPV issuer the fleet is financed for
        bytes32 root; // Merkle root over `GpuLeaf` hashes (see `leafHash`)
        uint32 count; // number of leaves
        uint128 totalCost; // purchase cost of all GPUs, stablecoin units
        bytes32 model; // e.g. keccak256("NVIDIA H100 SXM5 80GB")
        uint8 classId; // depreciation class
        uint40 inServiceAt; // earliest in-service date of the batch's GPUs
        bytes32 attestationHash; // hash of the attestation document set
    }

    /// @notice One GPU as committed to in a batch's Merkle tree.
    struct GpuLeaf {
        uint32 index; // position in the batch, < count
        bytes32 gpuKey; // keccak256(abi.encode(vendor, serial))
        bytes32 model;
        bytes32 siteId;
        bytes32 attestationHash; // hash of this GPU's attestation document
        uint128 cost;
        uint40 inServiceAt;
        uint8 classId;
    }

    /// @notice Depreciation curve of a class: straight-line markdown each
    ///         full quarter in service, never below `floorBps` of cost.
    struct DepreciationClass {
        uint16 quarterlyMarkdownBps;
        uint16 floorBps;
        bool exists;
    }

    event NoteOpened(uint256 indexed noteId, address indexed issuer, address manager);
    event NoteManagerSet(uint256 indexed noteId, address manager);
    event NoteTranchesSet(uint256 indexed noteId, address[] tranches);
    event BatchRegistered(
        uint256 indexed batchId,
        address indexed operator,
        address indexed issuer,
        bytes32 root,
        uint32 count,
        uint128 totalCost,
        bytes32 model,
        uint8 classId,
        uint40 inServiceAt,
        bytes32 attestationHash
    );
    event BatchAttested(uint256 indexed batchId, address indexed attestor, bytes32 attestationHash);
    event BatchPledged(uint256 indexed batchId, uint256 indexed noteId, uint256 collateralValue);
    event BatchVoided(uint256 indexed batchId, uint256 indexed noteId, bytes32 indexed gpuKey, string reason);
    event DoublePledgeProven(
        bytes32 indexed gpuKey, uint256 indexed keptBatchId, uint256 indexed voidedBatchId, address prover
    );
    event NoteCollateralDeficient(uint256 indexed noteId, uint256 indexed batchId);
    event NoteReleased(uint256 indexed noteId, address by);
    event LiensTransferred(uint256 indexed noteId, address indexed trustee);
    event DepreciationClassSet(uint8 indexed classId, uint16 quarterlyMarkdownBps, uint16 floorBps);
    event ModelHaircutSet(bytes32 indexed model, uint16 haircutBps);

    error NoteUnknown(uint256 noteId);
    error NoteNotOpen(uint256 noteId, NoteStatus status);
    error NoteNotRepaid(uint256 noteId);
    error NoteBatchLimitReached(uint256 noteId, uint256 limit);
    error CallerNotNoteManager(uint256 noteId, address caller);
    error CallerNotNoteIssuer(uint256 noteId, address caller);
    error BatchUnknown(uint256 batchId);
    error BatchNotInStatus(uint256 batchId, BatchStatus status, BatchStatus expected);
    error BatchEmpty();
    error BatchIssuerMismatch(uint256 batchId, address batchIssuer, address noteIssuer);
    error CallerNotBatchOperator(uint256 batchId, address caller);
    error BatchInServiceInFuture(uint40 inServiceAt);
    error DepreciationClassUnknown(uint8 classId);
    error BpsOutOfRange(uint256 bps);
    error ProofInvalid(uint256 batchId, bytes32 gpuKey);
    error BatchNotLive(uint256 batchId);
    error ProofsNotConflicting();
    error LeafConsistent(uint256 batchId);
    error ZeroAddress();

    /// @notice Opens a collateral pool for a new note of the calling issuer.
    /// @param manager address that may release the note and move its liens
    ///        (the note's servicer); the issuer can change it later.
    function openNote(address manager) external returns (uint256 noteId);

    /// @notice Hands the note's management to `manager`. Issuer only.
    function setNoteManager(uint256 noteId, address manager) external;

    /// @notice The tranche contracts whose outstanding principal the note's
    ///         collateral secures. Issuer only.
    function setNoteTranches(uint256 noteId, address[] calldata tranches) external;

    /// @notice Records a batch of GPUs. Operator role.
    function registerBatch(BatchRegistration calldata registration) external returns (uint256 batchId);

    /// @notice Confirms a batch's GPUs exist as described. Attestor role.
    function attestBatch(uint256 batchId, bytes32 attestationHash) external;

    /// @notice Pledges an attested batch to a note of the same issuer. The
    ///         batch's operator only.
    function pledgeBatch(uint256 batchId, uint256 noteId) external;

    /// @notice Frees every batch of a fully repaid note. The note's manager,
    ///         or anyone once every tranche reports it is repaid.
    function releaseNote(uint256 noteId) external;

    /// @notice Moves the note's liens to the trustee (step-in). Manager only.
    function transferLiens(uint256 noteId, address trustee) external;

    /// @notice Voids the later of two live batches that both hold the GPU
    ///         `a.gpuKey` (or one batch that holds it at two indexes).
    function proveDoublePledge(
        uint256 batchA,
        GpuLeaf calldata a,
        bytes32[] calldata proofA,
        uint256 batchB,
        GpuLeaf calldata b,
        bytes32[] calldata proofB
    ) external;

    /// @notice Voids a live batch with a leaf that contradicts its header
    ///         (index >= count, other model or class, earlier in-service date).
    function proveBadLeaf(uint256 batchId, GpuLeaf calldata leaf, bytes32[] calldata proof) external;

    /// @notice Sets a depreciation class. Valuation role.
    function setDepreciationClass(uint8 classId, uint16 quarterlyMarkdownBps, uint16 floorBps) external;

    /// @notice Sets the obsolescence haircut of a model (when a new
    ///         generation ships). Valuation role.
    function setModelHaircut(bytes32 model, uint16 haircutBps) external;

    /// @notice The Merkle leaf of a GPU record (double-hashed, OpenZeppelin style).
    function leafHash(GpuLeaf calldata leaf) external pure returns (bytes32);

    /// @notice True when `leaf` is in batch `batchId`.
    function verifyGpu(uint256 batchId, GpuLeaf calldata leaf, bytes32[] calldata proof) external view returns (bool);

    /// @notice Value of a batch now: cost x depreciation x (1 - haircut).
    function batchValue(uint256 batchId) external view returns (uint256);

    /// @notice Value of the live batches pledged to a note now. Loops over
    ///         the note's batches (at most `MAX_BATCHES_PER_NOTE`), never GPUs.
    function collateralValue(uint256 noteId) external view returns (uint256);

    /// @notice Outstanding principal of all the note's tranches.
    function outstandingPrincipal(uint256 noteId) external view returns (uint256);

    /// @notice Depreciation factor of a class after `quarters` full quarters.
    function depreciationFactorBps(uint8 classId, uint256 quarters) external view returns (uint256);

    /// @notice Whether a batch is pledged to a live note, and which note.
    function livePledgeOf(uint256 batchId) external view returns (bool live, uint256 noteId);
}
