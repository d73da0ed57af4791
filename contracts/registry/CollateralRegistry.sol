// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ICollateralRegistry} from "../interfaces/ICollateralRegistry.sol";
import {INoteTranche} from "../interfaces/INoteTranche.sol";
import {Depreciation} from "../libraries/Depreciation.sol";

/// @title Collateral registry of GPUs pledged to gpucredit notes
/// @notice See {ICollateralRegistry}. Each GPU costs one storage slot (its
///         holder), written once by `registerGpus`; a batch of any size costs
///         six header slots plus one per chunk; attestation, pledge and
///         valuation are O(1) per batch.
contract CollateralRegistry is ICollateralRegistry, AccessControlDefaultAdminRules {
    /// @notice A note's collateral pool. Slot 0 packs issuer, status, the
    ///         bound flag and the defect count.
    struct Note {
        address issuer;
        NoteStatus status;
        bool bound; // servicer, tranches and operators fixed
        uint64 defects; // defects proven in the note's batches
        address servicer;
        address lienholder;
        address[] tranches;
        address[] operators;
        uint64[] batchIds; // live batches (pledged, not voided), four ids per slot
    }

    /// @dev A queued value-raising class change; `eta == 0` means none. One slot.
    struct PendingClass {
        uint16 quarterlyMarkdownBps;
        uint16 floorBps;
        uint40 eta;
    }

    /// @dev A queued model change (or a new model); `eta == 0` means none. One slot.
    struct PendingModel {
        uint8 classId;
        uint16 haircutBps;
        uint40 eta;
    }

    /// @inheritdoc ICollateralRegistry
    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");
    /// @inheritdoc ICollateralRegistry
    bytes32 public constant NOTE_FACTORY_ROLE = keccak256("NOTE_FACTORY_ROLE");
    /// @inheritdoc ICollateralRegistry
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @inheritdoc ICollateralRegistry
    bytes32 public constant ATTESTOR_ROLE = keccak256("ATTESTOR_ROLE");
    /// @inheritdoc ICollateralRegistry
    bytes32 public constant VALUATION_ROLE = keccak256("VALUATION_ROLE");

    /// @inheritdoc ICollateralRegistry
    uint256 public constant QUARTER = Depreciation.QUARTER;
    /// @inheritdoc ICollateralRegistry
    uint256 public constant MAX_BATCHES_PER_NOTE = 32;
    /// @inheritdoc ICollateralRegistry
    uint256 public constant MAX_TRANCHES_PER_NOTE = 4;
    /// @inheritdoc ICollateralRegistry
    uint256 public constant MAX_KEYS_PER_CHUNK = 700;
    /// @inheritdoc ICollateralRegistry
    uint256 public constant VALUATION_CHANGE_DELAY = 2 days;
    /// @inheritdoc ICollateralRegistry
    uint256 public constant GRACE_PERIOD = 7 days;
    /// @inheritdoc ICollateralRegistry
    uint256 public constant REGISTRATION_WINDOW = 3 days;
    /// @inheritdoc ICollateralRegistry
    uint256 public constant PLEDGE_WINDOW = 14 days;
    /// @inheritdoc ICollateralRegistry
    uint256 public constant CHALLENGE_WINDOW = 3 days;

    /// @dev Initial wait between starting and accepting a transfer of `DEFAULT_ADMIN_ROLE`.
    uint48 private constant _ADMIN_TRANSFER_DELAY = 2 days;

    /// @dev Both counters in one slot; ids start at 1 and fit in uint64, the
    ///      width of `BatchHeader.noteId`, `Note.batchIds` and `_holders`.
    uint64 private _noteCount;
    uint64 private _batchCount;

    mapping(uint256 noteId => Note) private _notes;
    mapping(uint256 noteId => mapping(address operator => bool)) private _isNoteOperator;
    mapping(uint256 batchId => BatchHeader) private _batches;
    mapping(uint256 batchId => mapping(uint256 firstIndex => bytes32)) private _chunkHashes;
    /// @dev The uniqueness slot: GPU key -> the batch that registered it last.
    mapping(bytes32 gpuKey => uint64 batchId) private _holders;
    mapping(uint8 classId => DepreciationClass) private _classes;
    mapping(bytes32 model => ModelInfo) private _models;
    mapping(uint8 classId => PendingClass) private _pendingClasses;
    mapping(bytes32 model => PendingModel) private _pendingModels;

    /// @param admin receives `DEFAULT_ADMIN_ROLE` and `VALUATION_ROLE`.
    /// @dev Default classes: 0 "fast" (latest-generation training GPUs,
    ///      ~18-month economic life) 16.67 %/quarter; 1 at 20 %/yr
    ///      (5 %/quarter); 2 at 15 %/yr (3.75 %/quarter); all floored at 0.
    ///      Default models (no haircut): B200 in class 0, H100 and H200 in
    ///      class 1, A100 in class 2. Later models wait the timelock.
    constructor(address admin) AccessControlDefaultAdminRules(_ADMIN_TRANSFER_DELAY, _nonZero(admin)) {
        _grantRole(VALUATION_ROLE, admin);
        _setDepreciationClass(0, 1667, 0);
        _setDepreciationClass(1, 500, 0);
        _setDepreciationClass(2, 375, 0);
        _setModel(keccak256("NVIDIA B200 SXM 180GB"), 0, 0);
        _setModel(keccak256("NVIDIA H100 SXM5 80GB"), 1, 0);
        _setModel(keccak256("NVIDIA H200 SXM 141GB"), 1, 0);
        _setModel(keccak256("NVIDIA A100 80GB"), 2, 0);
    }

    // ---- notes ----

    /// @inheritdoc ICollateralRegistry
    function openNote(address issuer) external onlyRole(NOTE_FACTORY_ROLE) returns (uint256 noteId) {
        if (!hasRole(ISSUER_ROLE, issuer)) revert IssuerRoleMissing(issuer);
        noteId = ++_noteCount;
        Note storage note = _notes[noteId];
        note.issuer = issuer;
        note.status = NoteStatus.Open;
        emit NoteOpened(noteId, issuer, msg.sender);
    }

    /// @inheritdoc ICollateralRegistry
    function bindNote(
        uint256 noteId,
        address servicer,
        address[] calldata tranches,
        address[] calldata operators
    ) external onlyRole(NOTE_FACTORY_ROLE) {
        Note storage note = _note(noteId);
        if (note.bound) revert NoteAlreadyBound(noteId);
        if (note.status != NoteStatus.Open) revert NoteNotOpen(noteId, note.status);
        if (servicer == address(0)) revert ZeroAddress();
        if (tranches.length == 0 || tranches.length > MAX_TRANCHES_PER_NOTE) {
            revert NoteTranchesCount(noteId, tranches.length, MAX_TRANCHES_PER_NOTE);
        }
        if (operators.length == 0) revert NoteOperatorsEmpty(noteId);
        for (uint256 i = 0; i < tranches.length; ++i) {
            if (tranches[i] == address(0)) revert ZeroAddress();
        }
        for (uint256 i = 0; i < operators.length; ++i) {
            if (operators[i] == address(0)) revert ZeroAddress();
            _isNoteOperator[noteId][operators[i]] = true;
        }
        note.bound = true;
        note.servicer = servicer;
        note.tranches = tranches;
        note.operators = operators;
        emit NoteBound(noteId, servicer, tranches, operators);
    }

    /// @inheritdoc ICollateralRegistry
    function releaseNote(uint256 noteId) external {
        Note storage note = _note(noteId);
        if (!_isLiveNoteStatus(note.status)) revert NoteNotOpen(noteId, note.status);
        if (!note.bound) revert NoteNotBound(noteId);
        bool byLienholder = note.status == NoteStatus.SteppedIn && msg.sender == note.lienholder;
        if (!byLienholder && !_allTranchesSettled(note)) revert NoteNotRepaid(noteId);
        note.status = NoteStatus.Released;
        emit NoteReleased(noteId, msg.sender);
    }

    /// @inheritdoc ICollateralRegistry
    function transferLiens(uint256 noteId, address trustee) external {
        Note storage note = _note(noteId);
        if (!note.bound || msg.sender != note.servicer) revert CallerNotNoteServicer(noteId, msg.sender);
        if (note.status != NoteStatus.Open) revert NoteNotOpen(noteId, note.status);
        if (trustee == address(0)) revert ZeroAddress();
        note.status = NoteStatus.SteppedIn;
        note.lienholder = trustee;
        emit LiensTransferred(noteId, trustee);
    }

    // ---- batches ----

    /// @inheritdoc ICollateralRegistry
    function registerBatch(BatchRegistration calldata registration)
        external
        onlyRole(OPERATOR_ROLE)
        returns (uint256 batchId)
    {
        if (registration.count == 0) revert BatchEmpty();
        if (!_models[registration.model].exists) revert ModelUnknown(registration.model);
        if (registration.inServiceAt > block.timestamp) revert BatchInServiceInFuture(registration.inServiceAt);
        if (registration.issuer == address(0)) revert ZeroAddress();
        batchId = ++_batchCount;
        BatchHeader storage batch = _batches[batchId];
        batch.root = registration.root;
        batch.operator = msg.sender;
        batch.count = registration.count;
        batch.status = BatchStatus.Registering;
        batch.issuer = registration.issuer;
        batch.totalCost = registration.totalCost;
        batch.inServiceAt = registration.inServiceAt;
        batch.openedAt = uint40(block.timestamp);
        batch.model = registration.model;
        batch.attestationHash = registration.attestationHash;
        emit BatchRegistered(
            batchId,
            msg.sender,
            registration.issuer,
            registration.root,
            registration.count,
            registration.totalCost,
            registration.model,
            registration.inServiceAt,
            registration.attestationHash
        );
    }

    /// @inheritdoc ICollateralRegistry
    function registerGpus(uint256 batchId, bytes32[] calldata keys) external {
        BatchHeader storage batch = _batch(batchId);
        if (msg.sender != batch.operator) revert CallerNotBatchOperator(batchId, msg.sender);
        if (batch.status != BatchStatus.Registering) {
            revert BatchNotInStatus(batchId, batch.status, BatchStatus.Registering);
        }
        uint256 deadline = uint256(batch.openedAt) + REGISTRATION_WINDOW;
        if (block.timestamp >= deadline) revert BatchExpired(batchId, deadline);
        uint256 first = batch.keysRegistered;
        uint256 n = keys.length;
        if (n == 0 || n > MAX_KEYS_PER_CHUNK || first + n > batch.count) revert ChunkInvalid(batchId, first, n);

        uint64 id = uint64(batchId); // <= _batchCount, a uint64
        for (uint256 i = 0; i < n; ++i) {
            bytes32 key = keys[i];
            uint64 holder = _holders[key];
            if (holder != 0) {
                if (holder == id) revert GpuDuplicate(key, batchId);
                if (_blocks(_batches[holder])) revert GpuHeld(key, holder);
            }
            _holders[key] = id;
        }

        bytes32 hash = keccak256(abi.encodePacked(first, keys));
        _chunkHashes[batchId][first] = hash;
        uint32 registered = uint32(first + n); // <= count, a uint32
        batch.keysRegistered = registered;
        if (registered == batch.count) batch.status = BatchStatus.Registered;
        emit GpusRegistered(batchId, first, hash, keys);
    }

    /// @inheritdoc ICollateralRegistry
    function attestBatch(uint256 batchId, bytes32 attestationHash) external onlyRole(ATTESTOR_ROLE) {
        BatchHeader storage batch = _batch(batchId);
        if (batch.status != BatchStatus.Registered) {
            revert BatchNotInStatus(batchId, batch.status, BatchStatus.Registered);
        }
        uint256 deadline = uint256(batch.openedAt) + REGISTRATION_WINDOW;
        if (block.timestamp >= deadline) revert BatchExpired(batchId, deadline);
        batch.status = BatchStatus.Attested;
        batch.attestedAt = uint40(block.timestamp);
        batch.attestationHash = attestationHash;
        emit BatchAttested(batchId, msg.sender, attestationHash);
    }

    /// @inheritdoc ICollateralRegistry
    function rejectBatch(uint256 batchId) external onlyRole(ATTESTOR_ROLE) {
        BatchHeader storage batch = _batch(batchId);
        BatchStatus status = batch.status;
        if (status != BatchStatus.Registering && status != BatchStatus.Registered && status != BatchStatus.Attested)
        {
            revert BatchNotInStatus(batchId, status, BatchStatus.Attested);
        }
        batch.status = BatchStatus.Rejected;
        emit BatchRejected(batchId, msg.sender);
    }

    /// @inheritdoc ICollateralRegistry
    function pledgeBatch(uint256 batchId, uint256 noteId) external {
        BatchHeader storage batch = _batch(batchId);
        if (msg.sender != batch.operator) revert CallerNotBatchOperator(batchId, msg.sender);
        if (batch.status != BatchStatus.Attested) {
            revert BatchNotInStatus(batchId, batch.status, BatchStatus.Attested);
        }
        uint256 deadline = uint256(batch.attestedAt) + PLEDGE_WINDOW;
        if (block.timestamp >= deadline) revert BatchExpired(batchId, deadline);
        Note storage note = _note(noteId);
        if (note.status != NoteStatus.Open) revert NoteNotOpen(noteId, note.status);
        if (!note.bound) revert NoteNotBound(noteId);
        if (!_isNoteOperator[noteId][msg.sender]) revert CallerNotNoteOperator(noteId, msg.sender);
        if (batch.issuer != note.issuer) revert BatchIssuerMismatch(batchId, batch.issuer, note.issuer);
        if (note.batchIds.length >= MAX_BATCHES_PER_NOTE) revert NoteBatchLimitReached(noteId, MAX_BATCHES_PER_NOTE);
        batch.status = BatchStatus.Pledged;
        batch.noteId = uint64(noteId); // an existing note's id is <= _noteCount, a uint64
        note.batchIds.push(uint64(batchId)); // likewise <= _batchCount
        emit BatchPledged(batchId, noteId, _collateralValue(note));
    }

    // ---- fraud proofs ----

    /// @inheritdoc ICollateralRegistry
    function proveBadLeaf(uint256 batchId, GpuLeaf calldata leaf, bytes32[] calldata proof) external {
        BatchHeader storage batch = _challengeable(batchId);
        if (!MerkleProof.verifyCalldata(proof, batch.root, _leafHash(leaf))) revert ProofInvalid(batchId, leaf.gpuKey);
        _void(batchId, batch, leaf.gpuKey, _badLeafReason(batchId, batch, leaf));
    }

    /// @inheritdoc ICollateralRegistry
    function proveKeyMismatch(
        uint256 batchId,
        GpuLeaf calldata leaf,
        bytes32[] calldata proof,
        uint256 firstIndex,
        bytes32[] calldata keys
    ) external {
        BatchHeader storage batch = _challengeable(batchId);
        if (!MerkleProof.verifyCalldata(proof, batch.root, _leafHash(leaf))) revert ProofInvalid(batchId, leaf.gpuKey);
        if (keccak256(abi.encodePacked(firstIndex, keys)) != _chunkHashes[batchId][firstIndex]) {
            revert ChunkKeysMismatch(batchId, firstIndex);
        }
        uint256 index = leaf.index;
        if (index < firstIndex || index - firstIndex >= keys.length || keys[index - firstIndex] == leaf.gpuKey) {
            revert LeafConsistent(batchId);
        }
        _void(batchId, batch, leaf.gpuKey, "key mismatch");
    }

    // ---- valuation ----

    /// @inheritdoc ICollateralRegistry
    function setDepreciationClass(uint8 classId, uint16 quarterlyMarkdownBps, uint16 floorBps)
        external
        onlyRole(VALUATION_ROLE)
    {
        if (quarterlyMarkdownBps > Depreciation.BPS) revert BpsOutOfRange(quarterlyMarkdownBps);
        if (floorBps > Depreciation.BPS) revert BpsOutOfRange(floorBps);
        DepreciationClass memory current = _classes[classId];
        if (current.exists && !_notAbove(quarterlyMarkdownBps, floorBps, current)) {
            uint40 eta = uint40(block.timestamp + VALUATION_CHANGE_DELAY);
            _pendingClasses[classId] = PendingClass(quarterlyMarkdownBps, floorBps, eta);
            emit DepreciationClassQueued(classId, quarterlyMarkdownBps, floorBps, eta);
            return;
        }
        _dropPendingClass(classId);
        _setDepreciationClass(classId, quarterlyMarkdownBps, floorBps);
    }

    /// @inheritdoc ICollateralRegistry
    function executeDepreciationClass(uint8 classId) external onlyRole(VALUATION_ROLE) {
        PendingClass memory pending = _pendingClasses[classId];
        _requireReady(pending.eta);
        delete _pendingClasses[classId];
        _setDepreciationClass(classId, pending.quarterlyMarkdownBps, pending.floorBps);
    }

    /// @inheritdoc ICollateralRegistry
    function cancelDepreciationClass(uint8 classId) external onlyRole(VALUATION_ROLE) {
        if (!_dropPendingClass(classId)) revert ValuationChangeNotQueued();
    }

    /// @inheritdoc ICollateralRegistry
    function setModel(bytes32 model, uint8 classId, uint16 haircutBps) external onlyRole(VALUATION_ROLE) {
        if (haircutBps > Depreciation.BPS) revert BpsOutOfRange(haircutBps);
        if (!_classes[classId].exists) revert DepreciationClassUnknown(classId);
        ModelInfo memory current = _models[model];
        bool lowers = current.exists && haircutBps >= current.haircutBps
            && (classId == current.classId || _classNotAbove(classId, current.classId));
        if (!lowers) {
            uint40 eta = uint40(block.timestamp + VALUATION_CHANGE_DELAY);
            _pendingModels[model] = PendingModel(classId, haircutBps, eta);
            emit ModelQueued(model, classId, haircutBps, eta);
            return;
        }
        _dropPendingModel(model);
        _setModel(model, classId, haircutBps);
    }

    /// @inheritdoc ICollateralRegistry
    function executeModel(bytes32 model) external onlyRole(VALUATION_ROLE) {
        PendingModel memory pending = _pendingModels[model];
        _requireReady(pending.eta);
        delete _pendingModels[model];
        _setModel(model, pending.classId, pending.haircutBps);
    }

    /// @inheritdoc ICollateralRegistry
    function cancelModel(bytes32 model) external onlyRole(VALUATION_ROLE) {
        if (!_dropPendingModel(model)) revert ValuationChangeNotQueued();
    }

    // ---- views ----

    /// @inheritdoc ICollateralRegistry
    function leafHash(GpuLeaf calldata leaf) external pure returns (bytes32) {
        return _leafHash(leaf);
    }

    /// @inheritdoc ICollateralRegistry
    function verifyGpu(uint256 batchId, GpuLeaf calldata leaf, bytes32[] calldata proof) external view returns (bool) {
        return MerkleProof.verifyCalldata(proof, _batch(batchId).root, _leafHash(leaf));
    }

    /// @inheritdoc ICollateralRegistry
    function batchValue(uint256 batchId) external view returns (uint256) {
        return _batchValue(_batch(batchId));
    }

    /// @inheritdoc ICollateralRegistry
    function collateralValue(uint256 noteId) external view returns (uint256) {
        return _collateralValue(_note(noteId));
    }

    /// @inheritdoc ICollateralRegistry
    function outstandingPrincipal(uint256 noteId) external view returns (uint256 principal) {
        address[] storage tranches = _note(noteId).tranches;
        for (uint256 i = 0; i < tranches.length; ++i) {
            principal += INoteTranche(tranches[i]).principalOutstanding();
        }
    }

    /// @inheritdoc ICollateralRegistry
    function depreciationFactorBps(uint8 classId, uint256 quarters) external view returns (uint256) {
        DepreciationClass memory class_ = _classes[classId];
        if (!class_.exists) revert DepreciationClassUnknown(classId);
        return Depreciation.factorBps(class_.quarterlyMarkdownBps, class_.floorBps, quarters);
    }

    /// @inheritdoc ICollateralRegistry
    function livePledgeOf(uint256 batchId) external view returns (bool live, uint256 noteId) {
        BatchHeader storage batch = _batch(batchId);
        live = batch.status == BatchStatus.Pledged && _isLiveNoteStatus(_notes[batch.noteId].status);
        return (live, batch.noteId);
    }

    /// @inheritdoc ICollateralRegistry
    function holderOf(bytes32 gpuKey) external view returns (uint256 batchId, bool blocking) {
        batchId = _holders[gpuKey];
        blocking = batchId != 0 && _blocks(_batches[batchId]);
    }

    /// @inheritdoc ICollateralRegistry
    function chunkHash(uint256 batchId, uint256 firstIndex) external view returns (bytes32) {
        return _chunkHashes[batchId][firstIndex];
    }

    /// @inheritdoc ICollateralRegistry
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
        )
    {
        Note storage note = _note(noteId);
        uint64[] storage stored = note.batchIds;
        batchIds = new uint256[](stored.length);
        for (uint256 i = 0; i < stored.length; ++i) {
            batchIds[i] = stored[i];
        }
        return (note.issuer, note.servicer, note.status, note.lienholder, note.defects, batchIds);
    }

    /// @inheritdoc ICollateralRegistry
    function noteOperators(uint256 noteId) external view returns (address[] memory) {
        return _note(noteId).operators;
    }

    /// @inheritdoc ICollateralRegistry
    function noteTranches(uint256 noteId) external view returns (address[] memory) {
        return _note(noteId).tranches;
    }

    /// @inheritdoc ICollateralRegistry
    function batchInfo(uint256 batchId) external view returns (BatchHeader memory) {
        return _batch(batchId);
    }

    /// @inheritdoc ICollateralRegistry
    function depreciationClass(uint8 classId) external view returns (DepreciationClass memory) {
        return _classes[classId];
    }

    /// @inheritdoc ICollateralRegistry
    function modelInfo(bytes32 model) external view returns (ModelInfo memory) {
        return _models[model];
    }

    /// @inheritdoc ICollateralRegistry
    function pendingDepreciationClass(uint8 classId)
        external
        view
        returns (uint16 quarterlyMarkdownBps, uint16 floorBps, uint40 eta)
    {
        PendingClass memory pending = _pendingClasses[classId];
        return (pending.quarterlyMarkdownBps, pending.floorBps, pending.eta);
    }

    /// @inheritdoc ICollateralRegistry
    function pendingModel(bytes32 model) external view returns (uint8 classId, uint16 haircutBps, uint40 eta) {
        PendingModel memory pending = _pendingModels[model];
        return (pending.classId, pending.haircutBps, pending.eta);
    }

    // ---- internals ----

    /// @dev The constructor's admin, or ZeroAddress (checked before the base constructor runs).
    function _nonZero(address admin) private pure returns (address) {
        if (admin == address(0)) revert ZeroAddress();
        return admin;
    }

    /// @dev Expects bps values already checked (at most 10,000).
    function _setDepreciationClass(uint8 classId, uint16 quarterlyMarkdownBps, uint16 floorBps) private {
        _classes[classId] =
            DepreciationClass({quarterlyMarkdownBps: quarterlyMarkdownBps, floorBps: floorBps, exists: true});
        emit DepreciationClassSet(classId, quarterlyMarkdownBps, floorBps);
    }

    /// @dev Expects the class to exist and the haircut checked.
    function _setModel(bytes32 model, uint8 classId, uint16 haircutBps) private {
        _models[model] = ModelInfo({classId: classId, haircutBps: haircutBps, exists: true});
        emit ModelSet(model, classId, haircutBps);
    }

    /// @dev A curve (markdown, floor) is worth no more than `class_` at every
    ///      age: no depreciation at all is worth the most, else a markdown not
    ///      slower and a floor not higher.
    function _notAbove(uint16 markdownBps, uint16 floorBps, DepreciationClass memory class_)
        private
        pure
        returns (bool)
    {
        if (class_.quarterlyMarkdownBps == 0) return true; // class_ is worth 100 % forever
        return markdownBps >= class_.quarterlyMarkdownBps && floorBps <= class_.floorBps;
    }

    /// @dev Class `a` is worth no more than class `b` at every age.
    function _classNotAbove(uint8 a, uint8 b) private view returns (bool) {
        DepreciationClass memory classA = _classes[a];
        return _notAbove(classA.quarterlyMarkdownBps, classA.floorBps, _classes[b]);
    }

    /// @dev Deletes the class's queued change, if any; true when there was one.
    function _dropPendingClass(uint8 classId) private returns (bool dropped) {
        dropped = _pendingClasses[classId].eta != 0;
        if (dropped) {
            delete _pendingClasses[classId];
            emit DepreciationClassCancelled(classId);
        }
    }

    /// @dev Deletes the model's queued change, if any; true when there was one.
    function _dropPendingModel(bytes32 model) private returns (bool dropped) {
        dropped = _pendingModels[model].eta != 0;
        if (dropped) {
            delete _pendingModels[model];
            emit ModelCancelled(model);
        }
    }

    /// @dev Reverts unless a change is queued (`eta != 0`) and now is in
    ///      [eta, eta + GRACE_PERIOD].
    function _requireReady(uint40 eta) private view {
        if (eta == 0) revert ValuationChangeNotQueued();
        if (block.timestamp < eta) revert ValuationChangeNotReady(eta, block.timestamp);
        uint256 deadline = uint256(eta) + GRACE_PERIOD;
        if (block.timestamp > deadline) revert ValuationChangeExpired(eta, deadline, block.timestamp);
    }

    /// @dev Whether a batch still blocks the GPUs whose slot names it (see
    ///      {ICollateralRegistry}): provisional while registering (until the
    ///      registration window closes), attested (until the pledge window
    ///      closes), or a lien (pledged, voided or not, to a live note).
    function _blocks(BatchHeader storage batch) private view returns (bool) {
        BatchStatus status = batch.status;
        if (status == BatchStatus.Registering || status == BatchStatus.Registered) {
            return block.timestamp < uint256(batch.openedAt) + REGISTRATION_WINDOW;
        }
        if (status == BatchStatus.Attested) return block.timestamp < uint256(batch.attestedAt) + PLEDGE_WINDOW;
        if (status == BatchStatus.Pledged || (status == BatchStatus.Voided && batch.noteId != 0)) {
            return _isLiveNoteStatus(_notes[batch.noteId].status);
        }
        return false; // Rejected, or voided before any pledge
    }

    /// @dev A batch a defect may still void: before attestation or within
    ///      its challenge window, and not yet pledged unless to a live note.
    function _challengeable(uint256 batchId) private view returns (BatchHeader storage batch) {
        batch = _batch(batchId);
        BatchStatus status = batch.status;
        bool open = status == BatchStatus.Registering || status == BatchStatus.Registered
            || status == BatchStatus.Attested
            || (status == BatchStatus.Pledged && _isLiveNoteStatus(_notes[batch.noteId].status));
        if (!open) revert BatchNotChallengeable(batchId);
        uint256 attestedAt = batch.attestedAt;
        if (attestedAt != 0 && block.timestamp >= attestedAt + CHALLENGE_WINDOW) {
            revert ChallengeWindowClosed(batchId, attestedAt + CHALLENGE_WINDOW);
        }
    }

    /// @dev Why `leaf` contradicts its batch header, or LeafConsistent.
    function _badLeafReason(uint256 batchId, BatchHeader storage batch, GpuLeaf calldata leaf)
        private
        view
        returns (string memory)
    {
        if (leaf.index >= batch.count) return "index out of range";
        if (leaf.model != batch.model) return "model mismatch";
        if (leaf.inServiceAt < batch.inServiceAt) return "in service before batch";
        revert LeafConsistent(batchId);
    }

    /// @dev Marks a batch voided; a pledged one leaves its note's live
    ///      batches (its lien stays: `_blocks`) and counts a defect on the
    ///      note. Emits `BatchVoided` and, when pledged, `NoteDefectProven`.
    function _void(uint256 batchId, BatchHeader storage batch, bytes32 gpuKey, string memory reason) private {
        bool pledged = batch.status == BatchStatus.Pledged;
        batch.status = BatchStatus.Voided;
        uint256 noteId = batch.noteId;
        emit BatchVoided(batchId, noteId, gpuKey, reason);
        if (!pledged) return;
        Note storage note = _notes[noteId];
        uint64[] storage ids = note.batchIds;
        uint256 last = ids.length - 1;
        for (uint256 i = 0; i <= last; ++i) {
            if (ids[i] == batchId) {
                ids[i] = ids[last];
                ids.pop();
                break;
            }
        }
        uint256 defects = ++note.defects;
        emit NoteDefectProven(noteId, batchId, defects);
    }

    function _note(uint256 noteId) private view returns (Note storage note) {
        note = _notes[noteId];
        if (note.status == NoteStatus.None) revert NoteUnknown(noteId);
    }

    function _batch(uint256 batchId) private view returns (BatchHeader storage batch) {
        batch = _batches[batchId];
        if (batch.status == BatchStatus.None) revert BatchUnknown(batchId);
    }

    function _isLiveNoteStatus(NoteStatus status) private pure returns (bool) {
        return status == NoteStatus.Open || status == NoteStatus.SteppedIn;
    }

    /// @dev Staticcalls each tranche of a bound note (at least one):
    ///      true when every one is Repaid or Cancelled (never drawn).
    function _allTranchesSettled(Note storage note) private view returns (bool) {
        address[] storage tranches = note.tranches;
        for (uint256 i = 0; i < tranches.length; ++i) {
            INoteTranche.State state = INoteTranche(tranches[i]).state();
            if (state != INoteTranche.State.Repaid && state != INoteTranche.State.Cancelled) return false;
        }
        return true;
    }

    /// @dev The note's live batches whose challenge window has passed.
    function _collateralValue(Note storage note) private view returns (uint256 value) {
        if (!_isLiveNoteStatus(note.status)) return 0;
        uint64[] storage batchIds = note.batchIds;
        for (uint256 i = 0; i < batchIds.length; ++i) {
            BatchHeader storage batch = _batches[batchIds[i]];
            if (block.timestamp >= uint256(batch.attestedAt) + CHALLENGE_WINDOW) value += _batchValue(batch);
        }
    }

    /// @dev Rounds down (see {Depreciation-value}). The class and haircut are
    ///      the batch's model's, now.
    function _batchValue(BatchHeader storage batch) private view returns (uint256) {
        if (batch.status == BatchStatus.Voided || batch.status == BatchStatus.Rejected) return 0;
        ModelInfo memory model = _models[batch.model];
        DepreciationClass memory class_ = _classes[model.classId];
        uint256 quarters = Depreciation.quartersElapsed(batch.inServiceAt, block.timestamp);
        uint256 factor = Depreciation.factorBps(class_.quarterlyMarkdownBps, class_.floorBps, quarters);
        return Depreciation.value(batch.totalCost, factor, model.haircutBps);
    }

    function _leafHash(GpuLeaf calldata leaf) private pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        leaf.index, leaf.gpuKey, leaf.model, leaf.siteId, leaf.attestationHash, leaf.cost, leaf.inServiceAt
                    )
                )
            )
        );
    }
}
