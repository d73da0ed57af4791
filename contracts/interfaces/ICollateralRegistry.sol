// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Collateral registry of GPUs pledged to gpucredit notes
/// @notice One registry serves every issuer, so a GPU backs at most one live
///         note anywhere, and that is a property of state, checked when the
///         GPU enters a batch, never argued afterwards.
///
///         Uniqueness. The registry keeps one slot per GPU key
///         (`keccak256(abi.encode(vendor, serial))`): the batch that holds
///         the GPU. A batch's operator submits its GPU keys as calldata, in
///         chunks that fit one transaction (`registerGpus`); each key's slot
///         is written then. A key whose slot belongs to a batch that still
///         *blocks* reverts with `GpuHeld(key, holder)`; the same key twice
///         in one batch reverts with `GpuDuplicate` (so a batch never counts
///         a GPU twice). A batch blocks its GPUs:
///         - while registering or registered, until `REGISTRATION_WINDOW`
///           after it was opened (a provisional claim: unattested, it lapses
///           on its own; the attestor can reject it at once);
///         - once attested, until `PLEDGE_WINDOW` after the attestation;
///         - once pledged (voided or not), while its note is Open or
///           SteppedIn: the lien. Only a release (repayment, or the
///           lienholder after a step-in) ends it.
///         A batch that stopped blocking can never be attested or pledged
///         again, so no two live pledges ever hold the same GPU.
///
///         Attributes. Per-GPU attributes (model, site, attestation hash,
///         cost, in-service date) stay in a Merkle tree whose leaf `index` is
///         bound to the key registered at that index; the header keeps the
///         totals the attestor checked, so a note's value is O(1) per batch.
///         Within `CHALLENGE_WINDOW` of the attestation anyone may void a
///         batch with one leaf proof that contradicts its header
///         (`proveBadLeaf`) or its key list (`proveKeyMismatch`, with the
///         chunk's keys). A batch counts as collateral only once that window
///         has passed: what can still be voided never counts. A defect proven
///         in a pledged batch is counted on its note (`NoteDefectProven`);
///         the voided batch keeps its lien (its GPUs stay encumbered for the
///         note's lenders) until the note is released.
///
///         Valuation. The valuer keeps a model registry (model id ->
///         depreciation class, obsolescence haircut); a batch names a
///         registered model and inherits its class, which the operator cannot
///         choose. Changes that raise values (a new model, a move to a class
///         that is worth more at some age, a lower haircut, a slower markdown
///         or higher floor of an existing class) wait `VALUATION_CHANGE_DELAY`
///         and expire `GRACE_PERIOD` after their eta (executable only in
///         [eta, eta + GRACE_PERIOD], else queued again, in public);
///         changes that lower values apply at once and drop any change queued
///         for the same model or class. A new class is inert until a model
///         uses it, so it applies at once.
///
///         Notes. The note factory opens a note for an issuer and binds it
///         once to its servicer, tranches and consenting operators; nothing
///         about it changes afterwards.
///
///         Roles (OpenZeppelin AccessControl, each `keccak256("<NAME>")`):
///         `DEFAULT_ADMIN_ROLE` grants and revokes roles and is handed over
///         in two steps with a delay (AccessControlDefaultAdminRules);
///         `NOTE_FACTORY_ROLE` opens and binds notes; `ISSUER_ROLE` marks an
///         SPV issuer; `OPERATOR_ROLE` registers batches; `ATTESTOR_ROLE`
///         attests or rejects them; `VALUATION_ROLE` keeps classes and models.
interface ICollateralRegistry {
    /// @notice Life cycle of a note's collateral pool.
    enum NoteStatus {
        None,
        Open, // pledges accepted, liens held for the note's lenders
        Released, // repaid (or wound down by the trustee): every batch is free
        SteppedIn // liens transferred to the trustee after a default
    }

    /// @notice Life cycle of a batch.
    enum BatchStatus {
        None,
        Registering, // header recorded, GPU keys arriving in chunks
        Registered, // every key registered, awaiting attestation
        Attested, // an attestor checked the GPUs behind the keys and the root
        Pledged, // lien held by a note (live while the note is Open or SteppedIn)
        Voided, // a proven defect; never counts again (a pledged one keeps its lien)
        Rejected // the attestor refused it; its GPUs are free at once
    }

    /// @notice What an operator registers for a batch of GPUs.
    struct BatchRegistration {
        address issuer; // the SPV issuer the fleet is financed for
        bytes32 root; // Merkle root over `GpuLeaf` hashes (see `leafHash`)
        uint32 count; // number of GPUs (keys and leaves)
        uint128 totalCost; // purchase cost of all GPUs, stablecoin units
        bytes32 model; // a registered model, e.g. keccak256("NVIDIA H100 SXM5 80GB")
        uint40 inServiceAt; // earliest in-service date of the batch's GPUs
        bytes32 attestationHash; // hash of the attestation document set
    }

    /// @notice One GPU as committed to in a batch's Merkle tree.
    struct GpuLeaf {
        uint32 index; // position in the batch, < count; the key registered there is gpuKey
        bytes32 gpuKey; // keccak256(abi.encode(vendor, serial))
        bytes32 model;
        bytes32 siteId;
        bytes32 attestationHash; // hash of this GPU's attestation document
        uint128 cost;
        uint40 inServiceAt;
    }

    /// @notice A batch as stored: what `batchInfo` returns.
    struct BatchHeader {
        bytes32 root; // Merkle root over `GpuLeaf` hashes
        address operator; // registered the batch; the only one who may pledge it
        uint32 count; // number of GPUs
        uint32 keysRegistered; // keys registered so far (== count once Registered)
        BatchStatus status;
        address issuer; // the SPV issuer the fleet is financed for
        uint64 noteId; // note the batch is (or was) pledged to; 0 before pledging
        uint128 totalCost; // purchase cost of all GPUs, stablecoin units
        uint40 inServiceAt; // earliest in-service date of the batch's GPUs
        uint40 openedAt; // registerBatch time
        uint40 attestedAt; // attestBatch time; 0 before
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

    /// @notice A registered model: its class and obsolescence haircut.
    struct ModelInfo {
        uint8 classId;
        uint16 haircutBps;
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
        uint40 inServiceAt,
        bytes32 attestationHash
    );
    /// @notice The chunk of the batch's keys at indexes `firstIndex..` was
    ///         registered (each key's slot now names the batch);
    ///         `chunkHash = keccak256(abi.encodePacked(firstIndex, keys))`.
    event GpusRegistered(uint256 indexed batchId, uint256 firstIndex, bytes32 chunkHash, bytes32[] keys);
    event BatchAttested(uint256 indexed batchId, address indexed attestor, bytes32 attestationHash);
    /// @notice The attestor refused the batch; its GPUs are free again.
    event BatchRejected(uint256 indexed batchId, address indexed attestor);
    event BatchPledged(uint256 indexed batchId, uint256 indexed noteId, uint256 collateralValue);
    /// @notice A defect was proven; `noteId` is 0 for an unpledged batch.
    event BatchVoided(uint256 indexed batchId, uint256 indexed noteId, bytes32 indexed gpuKey, string reason);
    /// @notice A defect was proven in batch `batchId` of the note; `defects`
    ///         is the note's new defect count (never decreases).
    event NoteDefectProven(uint256 indexed noteId, uint256 indexed batchId, uint256 defects);
    event NoteReleased(uint256 indexed noteId, address by);
    event LiensTransferred(uint256 indexed noteId, address indexed trustee);
    event DepreciationClassSet(uint8 indexed classId, uint16 quarterlyMarkdownBps, uint16 floorBps);
    /// @notice A class change that raises values was queued; executable from `eta`.
    event DepreciationClassQueued(uint8 indexed classId, uint16 quarterlyMarkdownBps, uint16 floorBps, uint40 eta);
    /// @notice The change queued for a class was dropped.
    event DepreciationClassCancelled(uint8 indexed classId);
    /// @notice A model's class and haircut took effect.
    event ModelSet(bytes32 indexed model, uint8 classId, uint16 haircutBps);
    /// @notice A value-raising model change (or a new model) was queued; executable from `eta`.
    event ModelQueued(bytes32 indexed model, uint8 classId, uint16 haircutBps, uint40 eta);
    /// @notice The change queued for a model was dropped.
    event ModelCancelled(bytes32 indexed model);

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
    /// @notice A note needs 1..`MAX_TRANCHES_PER_NOTE` tranches.
    error NoteTranchesCount(uint256 noteId, uint256 count, uint256 limit);
    error BatchUnknown(uint256 batchId);
    error BatchNotInStatus(uint256 batchId, BatchStatus status, BatchStatus expected);
    error BatchEmpty();
    error BatchIssuerMismatch(uint256 batchId, address batchIssuer, address noteIssuer);
    error CallerNotBatchOperator(uint256 batchId, address caller);
    error BatchInServiceInFuture(uint40 inServiceAt);
    /// @notice The batch's registration or pledge window closed at `deadline`.
    error BatchExpired(uint256 batchId, uint256 deadline);
    /// @notice A chunk must start at the next unregistered index and hold
    ///         1..`MAX_KEYS_PER_CHUNK` keys, not past the batch's count.
    error ChunkInvalid(uint256 batchId, uint256 firstIndex, uint256 length);
    /// @notice The keys given for a chunk do not hash to the stored chunk hash.
    error ChunkKeysMismatch(uint256 batchId, uint256 firstIndex);
    /// @notice The GPU is held by batch `holderBatchId`, which still blocks it.
    error GpuHeld(bytes32 gpuKey, uint256 holderBatchId);
    /// @notice The GPU is already in this batch.
    error GpuDuplicate(bytes32 gpuKey, uint256 batchId);
    /// @notice Defects are provable only until `closedAt`.
    error ChallengeWindowClosed(uint256 batchId, uint256 closedAt);
    /// @notice The batch is not in a status a defect can void.
    error BatchNotChallengeable(uint256 batchId);
    error DepreciationClassUnknown(uint8 classId);
    error ModelUnknown(bytes32 model);
    error BpsOutOfRange(uint256 bps);
    error ProofInvalid(uint256 batchId, bytes32 gpuKey);
    error LeafConsistent(uint256 batchId);
    error ZeroAddress();
    /// @notice Nothing is queued for this model or class.
    error ValuationChangeNotQueued();
    /// @notice The queued valuation change may only be executed from `eta`.
    error ValuationChangeNotReady(uint40 eta, uint256 nowTs);
    /// @notice The queued valuation change expired: it could be executed only
    ///         until `deadline` (= eta + GRACE_PERIOD) and must be queued again.
    error ValuationChangeExpired(uint40 eta, uint256 deadline, uint256 nowTs);

    // ---- constants ----

    /// @notice `keccak256("ISSUER_ROLE")`: an SPV issuer notes may be opened for.
    function ISSUER_ROLE() external view returns (bytes32);

    /// @notice `keccak256("NOTE_FACTORY_ROLE")`: opens and binds notes
    ///         (granted by the registry admin to the NoteFactory only).
    function NOTE_FACTORY_ROLE() external view returns (bytes32);

    /// @notice `keccak256("OPERATOR_ROLE")`: may register batches.
    function OPERATOR_ROLE() external view returns (bytes32);

    /// @notice `keccak256("ATTESTOR_ROLE")`: may attest and reject batches.
    function ATTESTOR_ROLE() external view returns (bytes32);

    /// @notice `keccak256("VALUATION_ROLE")`: keeps depreciation classes and models.
    function VALUATION_ROLE() external view returns (bytes32);

    /// @notice Length of a depreciation step: 365.25 days / 4 = 7,889,400 s.
    function QUARTER() external view returns (uint256);

    /// @notice Most live batches a note can hold (bounds `collateralValue`).
    function MAX_BATCHES_PER_NOTE() external view returns (uint256);

    /// @notice Most tranches a note can have (bounds `outstandingPrincipal`).
    function MAX_TRANCHES_PER_NOTE() external view returns (uint256);

    /// @notice Most keys in one `registerGpus` call (about 16 M gas when
    ///         every slot is new: under the 16,777,216 per-transaction cap).
    function MAX_KEYS_PER_CHUNK() external view returns (uint256);

    /// @notice Seconds a value-raising valuation change waits (2 days).
    function VALUATION_CHANGE_DELAY() external view returns (uint256);

    /// @notice Seconds after its eta during which a queued valuation change
    ///         may still be executed (7 days, as Compound's Timelock); later
    ///         `execute*` reverts `ValuationChangeExpired`.
    function GRACE_PERIOD() external view returns (uint256);

    /// @notice Seconds from `registerBatch` within which the batch must be
    ///         attested; until then its keys are provisionally held.
    function REGISTRATION_WINDOW() external view returns (uint256);

    /// @notice Seconds from attestation within which the batch must be pledged.
    function PLEDGE_WINDOW() external view returns (uint256);

    /// @notice Seconds from attestation during which defects are provable;
    ///         a batch counts as collateral only afterwards.
    function CHALLENGE_WINDOW() external view returns (uint256);

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

    // ---- batches ----

    /// @notice Opens a batch: root, totals and a registered model (whose
    ///         class the batch inherits). Operator role; the caller becomes
    ///         the batch's operator. Batch ids start at 1. The keys follow
    ///         with `registerGpus`, within `REGISTRATION_WINDOW`.
    function registerBatch(BatchRegistration calldata registration) external returns (uint256 batchId);

    /// @notice Registers the next chunk of the batch's GPU keys, starting at
    ///         index `keysRegistered`: each key's slot now names the batch.
    ///         The batch's operator, while Registering and within
    ///         `REGISTRATION_WINDOW`. Reverts `GpuHeld` for a key another
    ///         batch still blocks and `GpuDuplicate` for a key already in this
    ///         batch. The last chunk moves the batch to Registered. Resumable:
    ///         `batchInfo(batchId).keysRegistered` says where to go on.
    function registerGpus(uint256 batchId, bytes32[] calldata keys) external;

    /// @notice Confirms the batch's GPUs exist as its keys and leaves say
    ///         and records the hash of the attestation documents
    ///         (Registered -> Attested, within `REGISTRATION_WINDOW`).
    ///         Attestor role. Starts the challenge window.
    function attestBatch(uint256 batchId, bytes32 attestationHash) external;

    /// @notice Refuses a batch before it is pledged (Registering, Registered
    ///         or Attested -> Rejected): its keys stop blocking at once.
    ///         Attestor role.
    function rejectBatch(uint256 batchId) external;

    /// @notice Pledges an attested batch, within `PLEDGE_WINDOW` of its
    ///         attestation, to a bound, Open note of the same issuer that
    ///         holds fewer than `MAX_BATCHES_PER_NOTE` live (pledged, not
    ///         voided) batches. The caller must be the batch's operator and
    ///         one of the note's operators (the note's consent).
    ///         `BatchPledged` carries the note's collateral value, in which
    ///         the batch counts once its challenge window has passed.
    function pledgeBatch(uint256 batchId, uint256 noteId) external;

    /// @notice Voids a batch with a leaf that contradicts its header (index
    ///         >= count, other model, in service before the batch).
    ///         Permissionless, within `CHALLENGE_WINDOW` of the attestation
    ///         (or before it), while the batch is Registering, Registered,
    ///         Attested or pledged to a live note. `BatchVoided` says which:
    ///         "index out of range", "model mismatch" or "in service before
    ///         batch"; a pledged batch's note counts a defect.
    function proveBadLeaf(uint256 batchId, GpuLeaf calldata leaf, bytes32[] calldata proof) external;

    /// @notice Voids a batch with a leaf whose `gpuKey` is not the key
    ///         registered at `leaf.index`: `keys` are the keys of the chunk
    ///         registered from index `firstIndex` (checked against the stored
    ///         chunk hash). Same window and statuses as `proveBadLeaf`; reason
    ///         "key mismatch".
    function proveKeyMismatch(
        uint256 batchId,
        GpuLeaf calldata leaf,
        bytes32[] calldata proof,
        uint256 firstIndex,
        bytes32[] calldata keys
    ) external;

    // ---- valuation ----

    /// @notice Sets (or creates) a depreciation class. Valuation role. Both
    ///         bps values at most 10,000. At once when the class is new (no
    ///         model uses it yet) or the change lowers values (markdown not
    ///         lower, floor not higher), dropping any queued change of the
    ///         class; otherwise queued (`DepreciationClassQueued`).
    function setDepreciationClass(uint8 classId, uint16 quarterlyMarkdownBps, uint16 floorBps) external;

    /// @notice Applies the queued change of a class once its eta has passed
    ///         and at the latest at eta + GRACE_PERIOD (else
    ///         `ValuationChangeExpired`). Valuation role.
    function executeDepreciationClass(uint8 classId) external;

    /// @notice Drops the queued change of a class. Valuation role.
    function cancelDepreciationClass(uint8 classId) external;

    /// @notice Registers a model or changes its class and haircut (at most
    ///         10,000 bps; the class must exist). Valuation role. A change
    ///         that lowers values at every age (a class whose markdown is not
    ///         lower and floor not higher, a haircut not lower) applies at
    ///         once and drops any queued change of the model; a new model or
    ///         any other change is queued (`ModelQueued`) for `executeModel`.
    function setModel(bytes32 model, uint8 classId, uint16 haircutBps) external;

    /// @notice Applies the queued change of a model once its eta has passed
    ///         and at the latest at eta + GRACE_PERIOD (else
    ///         `ValuationChangeExpired`; the class must still exist).
    ///         Valuation role.
    function executeModel(bytes32 model) external;

    /// @notice Drops the queued change of a model. Valuation role.
    function cancelModel(bytes32 model) external;

    // ---- views ----

    /// @notice The Merkle leaf of a GPU record (double-hashed, OpenZeppelin
    ///         StandardMerkleTree style): `keccak256(bytes.concat(keccak256(
    ///         abi.encode(index, gpuKey, model, siteId, attestationHash, cost,
    ///         inServiceAt))))`. Trees hash sorted pairs.
    function leafHash(GpuLeaf calldata leaf) external pure returns (bytes32);

    /// @notice True when `leaf` is in batch `batchId`'s tree.
    function verifyGpu(uint256 batchId, GpuLeaf calldata leaf, bytes32[] calldata proof) external view returns (bool);

    /// @notice Value of a batch now: cost x depreciation x (1 - haircut) of
    ///         its model, rounded down. Zero once voided or rejected.
    ///         Computed for any other status (whether it counts for a note is
    ///         `collateralValue`'s business).
    function batchValue(uint256 batchId) external view returns (uint256);

    /// @notice Value of the note's collateral that can no longer be voided,
    ///         now: its live batches whose challenge window has passed.
    ///         Loops over the note's live batches (at most
    ///         `MAX_BATCHES_PER_NOTE`), never GPUs. Zero unless Open or SteppedIn.
    function collateralValue(uint256 noteId) external view returns (uint256);

    /// @notice Outstanding principal of all the note's tranches.
    function outstandingPrincipal(uint256 noteId) external view returns (uint256);

    /// @notice Depreciation factor of a class after `quarters` full quarters.
    function depreciationFactorBps(uint8 classId, uint256 quarters) external view returns (uint256);

    /// @notice Whether a batch is pledged (not voided) to a live note, and
    ///         which note (0 if never pledged).
    function livePledgeOf(uint256 batchId) external view returns (bool live, uint256 noteId);

    /// @notice The batch whose slot holds the GPU (0 if none ever did) and
    ///         whether it still blocks the GPU.
    function holderOf(bytes32 gpuKey) external view returns (uint256 batchId, bool blocking);

    /// @notice The stored hash of the chunk of a batch's keys registered
    ///         from index `firstIndex` (zero when no chunk starts there).
    function chunkHash(uint256 batchId, uint256 firstIndex) external view returns (bytes32);

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

    /// @notice A model's class and haircut (`exists` false when never set).
    function modelInfo(bytes32 model) external view returns (ModelInfo memory);

    /// @notice The change queued for a class (`eta` 0 when none; expired
    ///         after eta + GRACE_PERIOD).
    function pendingDepreciationClass(uint8 classId)
        external
        view
        returns (uint16 quarterlyMarkdownBps, uint16 floorBps, uint40 eta);

    /// @notice The change queued for a model (`eta` 0 when none; expired
    ///         after eta + GRACE_PERIOD).
    function pendingModel(bytes32 model) external view returns (uint8 classId, uint16 haircutBps, uint40 eta);
}
