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
///
///         Roles (OpenZeppelin AccessControl, each `keccak256("<NAME>")`):
///         `DEFAULT_ADMIN_ROLE` grants and revokes roles and is handed over
///         in two steps with a delay (OpenZeppelin
///         AccessControlDefaultAdminRules); `ISSUER_ROLE` opens notes;
///         `OPERATOR_ROLE` registers batches; `ATTESTOR_ROLE` attests them;
///         `VALUATION_ROLE` sets depreciation classes and model haircuts.
///
///         Valuation changes that raise collateral values (a lower model
///         haircut, a lower quarterly markdown or a higher floor of an
///         existing class) weaken the lenders' protection, so they are
///         queued and take effect only after `VALUATION_CHANGE_DELAY`.
///         Changes that lower values (more conservative) apply at once and
///         drop any change queued for the same model or class.
///
///         A batch is live while it is `Pledged` and its note is `Open` or
///         `SteppedIn`. Releasing a note frees all its batches at once (their
///         status stays `Pledged`, the note's status decides); a released
///         batch is never pledged again: its GPUs are registered and attested
///         afresh in a new batch.
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

    /// @notice A batch as stored (six slots): what `batchInfo` returns.
    struct BatchHeader {
        bytes32 root; // Merkle root over `GpuLeaf` hashes
        address operator; // registered the batch; the only one who may pledge it
        uint32 count; // number of leaves
        uint8 classId; // depreciation class
        uint40 inServiceAt; // earliest in-service date of the batch's GPUs
        BatchStatus status;
        address issuer; // the SPV issuer the fleet is financed for
        uint64 noteId; // note the batch is (or was) pledged to; 0 before pledging
        uint128 totalCost; // purchase cost of all GPUs, stablecoin units
        bytes32 model;
        bytes32 attestationHash; // the operator's at registration, the attestor's once attested
    }

    /// @notice Depreciation curve of a class: straight-line markdown each
    ///         full quarter in service, never below `floorBps` of cost.
    struct DepreciationClass {
        uint16 quarterlyMarkdownBps;
        uint16 floorBps;
        bool exists;
    }

    /// @notice The note factory opened a collateral pool for `issuer`.
    event NoteOpened(uint256 indexed noteId, address indexed issuer, address factory);
    /// @notice The note's servicer, tranches and consenting operators were
    ///         fixed, once and for all.
    event NoteBound(uint256 indexed noteId, address indexed servicer, address[] tranches, address[] operators);
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
    /// @notice A defect was proven in batch `batchId` of the note; `defects`
    ///         is the note's new defect count (never decreases).
    event NoteDefectProven(uint256 indexed noteId, uint256 indexed batchId, uint256 defects);
    event NoteReleased(uint256 indexed noteId, address by);
    event LiensTransferred(uint256 indexed noteId, address indexed trustee);
    event DepreciationClassSet(uint8 indexed classId, uint16 quarterlyMarkdownBps, uint16 floorBps);
    event ModelHaircutSet(bytes32 indexed model, uint16 haircutBps);
    /// @notice A class change that raises values was queued; executable from `eta`.
    event DepreciationClassQueued(uint8 indexed classId, uint16 quarterlyMarkdownBps, uint16 floorBps, uint40 eta);
    /// @notice The change queued for a class was dropped.
    event DepreciationClassCancelled(uint8 indexed classId);
    /// @notice A haircut cut (which raises values) was queued; executable from `eta`.
    event ModelHaircutQueued(bytes32 indexed model, uint16 haircutBps, uint40 eta);
    /// @notice The change queued for a model was dropped.
    event ModelHaircutCancelled(bytes32 indexed model);

    error NoteUnknown(uint256 noteId);
    error NoteNotOpen(uint256 noteId, NoteStatus status);
    /// @notice Neither every tranche is Repaid or Cancelled, nor is the
    ///         caller the lienholder of a stepped-in note.
    error NoteNotRepaid(uint256 noteId);
    error NoteBatchLimitReached(uint256 noteId, uint256 limit);
    error CallerNotNoteServicer(uint256 noteId, address caller);
    /// @notice The caller is not one of the operators the note names.
    error CallerNotNoteOperator(uint256 noteId, address caller);
    /// @notice `openNote` for an address without ISSUER_ROLE.
    error IssuerRoleMissing(address issuer);
    /// @notice `bindNote` was already called for this note.
    error NoteAlreadyBound(uint256 noteId);
    /// @notice The note has no servicer, tranches and operators yet.
    error NoteNotBound(uint256 noteId);
    /// @notice `bindNote` without any operator.
    error NoteOperatorsEmpty(uint256 noteId);
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
    /// @notice A note needs 1..`MAX_TRANCHES_PER_NOTE` tranches.
    error NoteTranchesCount(uint256 noteId, uint256 count, uint256 limit);
    /// @notice Nothing is queued for this model or class.
    error ValuationChangeNotQueued();
    /// @notice The queued valuation change may only be executed from `eta`.
    error ValuationChangeNotReady(uint40 eta, uint256 nowTs);

    // ---- constants ----

    /// @notice `keccak256("ISSUER_ROLE")`: an SPV issuer notes may be opened for.
    function ISSUER_ROLE() external view returns (bytes32);

    /// @notice `keccak256("NOTE_FACTORY_ROLE")`: opens and binds notes
    ///         (granted by the registry admin to the NoteFactory only).
    function NOTE_FACTORY_ROLE() external view returns (bytes32);

    /// @notice `keccak256("OPERATOR_ROLE")`: may register batches.
    function OPERATOR_ROLE() external view returns (bytes32);

    /// @notice `keccak256("ATTESTOR_ROLE")`: may attest batches.
    function ATTESTOR_ROLE() external view returns (bytes32);

    /// @notice `keccak256("VALUATION_ROLE")`: may set depreciation classes
    ///         and model haircuts.
    function VALUATION_ROLE() external view returns (bytes32);

    /// @notice Length of a depreciation step: 365.25 days / 4 = 7,889,400 s.
    function QUARTER() external view returns (uint256);

    /// @notice Most batches a note can hold (bounds `collateralValue`).
    function MAX_BATCHES_PER_NOTE() external view returns (uint256);

    /// @notice Most tranches a note can have (bounds `outstandingPrincipal`).
    function MAX_TRANCHES_PER_NOTE() external view returns (uint256);

    /// @notice Seconds a value-raising valuation change waits (2 days).
    function VALUATION_CHANGE_DELAY() external view returns (uint256);

    // ---- notes ----

    /// @notice Opens a collateral pool for a new note of `issuer`. Note
    ///         factory role; `issuer` must hold `ISSUER_ROLE`. Note ids start
    ///         at 1. The note accepts no pledge until `bindNote`.
    function openNote(address issuer) external returns (uint256 noteId);

    /// @notice Fixes, once and before any pledge, the note's servicer (the
    ///         lienholders' agent: the only one who may transfer the liens),
    ///         its tranches (1..`MAX_TRANCHES_PER_NOTE`, whose principal the
    ///         collateral secures) and the operators that may pledge into it
    ///         (at least one). Note factory role. No zero address anywhere.
    ///         Nothing about the note can change afterwards.
    function bindNote(
        uint256 noteId,
        address servicer,
        address[] calldata tranches,
        address[] calldata operators
    ) external;

    // ---- batches ----

    /// @notice Records a batch of GPUs. Operator role; the caller becomes the
    ///         batch's operator. Batch ids start at 1.
    function registerBatch(BatchRegistration calldata registration) external returns (uint256 batchId);

    /// @notice Confirms a batch's GPUs exist as described and records the
    ///         hash of the attestation documents (Registered -> Attested).
    ///         Attestor role.
    function attestBatch(uint256 batchId, bytes32 attestationHash) external;

    /// @notice Pledges an attested batch to a bound, Open note of the same
    ///         issuer that holds fewer than `MAX_BATCHES_PER_NOTE` live
    ///         (pledged, not voided) batches. The caller must be the batch's
    ///         operator and one of the note's operators (the note's
    ///         consent). `BatchPledged` carries the note's new collateral
    ///         value.
    function pledgeBatch(uint256 batchId, uint256 noteId) external;

    /// @notice Frees every batch of the note (O(1): the batches stop being
    ///         live because the note is Released). Either anyone, once every
    ///         tranche's `state()` is Repaid or Cancelled (never drawn); or
    ///         the lienholder (the trustee) of a stepped-in note, when the
    ///         wind-down ends, whatever the loss. The note must be Open or
    ///         SteppedIn and bound.
    function releaseNote(uint256 noteId) external;

    /// @notice Moves the note's liens to the trustee (step-in). The note's
    ///         servicer only, once, note Open. The batches stay live: they
    ///         still block the GPUs and still count as collateral, now for
    ///         the trustee, who alone may release them.
    function transferLiens(uint256 noteId, address trustee) external;

    /// @notice Voids the later of two live batches that both hold the GPU
    ///         `a.gpuKey` (or one batch that holds it at two indexes).
    ///         Permissionless. Two batches conflict when both are live and
    ///         both proofs are valid for the same gpuKey; one batch conflicts
    ///         with itself when it holds two distinct leaves (e.g. two
    ///         indexes) with the same gpuKey. The batch with the higher id is
    ///         voided (one batch: that batch, reported with `keptBatchId` 0)
    ///         and its note marked collateral-deficient; emits
    ///         `DoublePledgeProven`, `BatchVoided` ("double pledge") and
    ///         `NoteDefectProven`.
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
    ///         Permissionless. `BatchVoided` says which: "index out of range",
    ///         "model mismatch", "class mismatch" or "in service before batch".
    function proveBadLeaf(uint256 batchId, GpuLeaf calldata leaf, bytes32[] calldata proof) external;

    // ---- valuation ----

    /// @notice Sets (or creates) a depreciation class. Valuation role. Both
    ///         bps values at most 10,000. Applies to every batch of the class
    ///         (values are computed on read): at once when the class is new
    ///         or the change lowers values (markdown not lower, floor not
    ///         higher), dropping any queued change of the class; otherwise
    ///         queued (`DepreciationClassQueued`) for `executeDepreciationClass`.
    function setDepreciationClass(uint8 classId, uint16 quarterlyMarkdownBps, uint16 floorBps) external;

    /// @notice Applies the queued change of a class once its eta has passed.
    ///         Valuation role.
    function executeDepreciationClass(uint8 classId) external;

    /// @notice Drops the queued change of a class. Valuation role.
    function cancelDepreciationClass(uint8 classId) external;

    /// @notice Sets the obsolescence haircut of a model (when a new
    ///         generation ships). Valuation role. At most 10,000 bps. A raise
    ///         (or no change) applies at once and drops any queued change of
    ///         the model; a cut is queued (`ModelHaircutQueued`) for
    ///         `executeModelHaircut`.
    function setModelHaircut(bytes32 model, uint16 haircutBps) external;

    /// @notice Applies the queued haircut of a model once its eta has
    ///         passed. Valuation role.
    function executeModelHaircut(bytes32 model) external;

    /// @notice Drops the queued haircut of a model. Valuation role.
    function cancelModelHaircut(bytes32 model) external;

    // ---- views ----

    /// @notice The Merkle leaf of a GPU record (double-hashed, OpenZeppelin
    ///         StandardMerkleTree style): `keccak256(bytes.concat(keccak256(
    ///         abi.encode(index, gpuKey, model, siteId, attestationHash, cost,
    ///         inServiceAt, classId))))`. Trees hash sorted pairs.
    function leafHash(GpuLeaf calldata leaf) external pure returns (bytes32);

    /// @notice True when `leaf` is in batch `batchId`.
    function verifyGpu(uint256 batchId, GpuLeaf calldata leaf, bytes32[] calldata proof) external view returns (bool);

    /// @notice Value of a batch now: cost x depreciation x (1 - haircut),
    ///         rounded down. Zero once voided. Computed for any other status
    ///         (whether it counts for a note is `collateralValue`'s business).
    function batchValue(uint256 batchId) external view returns (uint256);

    /// @notice Value of the note's collateral that can no longer be voided,
    ///         now. Loops over the note's live batches (at most
    ///         `MAX_BATCHES_PER_NOTE`), never GPUs. Zero unless Open or SteppedIn.
    function collateralValue(uint256 noteId) external view returns (uint256);

    /// @notice Outstanding principal of all the note's tranches.
    function outstandingPrincipal(uint256 noteId) external view returns (uint256);

    /// @notice Depreciation factor of a class after `quarters` full quarters.
    function depreciationFactorBps(uint8 classId, uint256 quarters) external view returns (uint256);

    /// @notice Whether a batch is pledged to a live note, and which note.
    ///         `noteId` is the note the batch was pledged to, live or not
    ///         (0 if never pledged).
    function livePledgeOf(uint256 batchId) external view returns (bool live, uint256 noteId);

    /// @notice Everything stored about a note except its tranches and operators.
    /// @return issuer the SPV issuer the note was opened for
    /// @return servicer the lienholders' agent; the zero address until bound
    /// @return status life cycle of the note's collateral pool
    /// @return lienholder the trustee once SteppedIn, else the zero address
    /// @return defects number of defects proven in the note's batches
    /// @return batchIds the note's live batches (pledged, not voided)
    function noteInfo(uint256 noteId)
        external
        view
        returns (
            address issuer,
            address servicer,
            NoteStatus status,
            address lienholder,
            uint256 defects,
            uint256[] memory batchIds
        );

    /// @notice The operators that may pledge into a note (empty until bound).
    function noteOperators(uint256 noteId) external view returns (address[] memory);

    /// @notice The tranche contracts of a note.
    function noteTranches(uint256 noteId) external view returns (address[] memory);

    /// @notice The stored header of a batch.
    function batchInfo(uint256 batchId) external view returns (BatchHeader memory);

    /// @notice A depreciation class (`exists` false when never set).
    function depreciationClass(uint8 classId) external view returns (DepreciationClass memory);

    /// @notice The obsolescence haircut of a model, in bps.
    function modelHaircutBps(bytes32 model) external view returns (uint16);

    /// @notice The change queued for a class (`eta` 0 when none).
    function pendingDepreciationClass(uint8 classId)
        external
        view
        returns (uint16 quarterlyMarkdownBps, uint16 floorBps, uint40 eta);

    /// @notice The haircut queued for a model (`eta` 0 when none).
    function pendingModelHaircut(bytes32 model) external view returns (uint16 haircutBps, uint40 eta);
}
