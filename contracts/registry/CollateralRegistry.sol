// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {ICollateralRegistry} from "../interfaces/ICollateralRegistry.sol";
import {INoteTranche} from "../interfaces/INoteTranche.sol";
import {Depreciation} from "../libraries/Depreciation.sol";

/// @title Collateral registry of GPUs pledged to gpucredit notes
/// @notice See {ICollateralRegistry}. A batch of any size costs six storage
///         slots to register, and one more write each to attest and pledge;
///         GPUs are only ever touched one at a time, by fraud proofs.
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
    uint256 public constant VALUATION_CHANGE_DELAY = 2 days;

    /// @dev Initial wait between starting and accepting a transfer of `DEFAULT_ADMIN_ROLE`.
    uint48 private constant _ADMIN_TRANSFER_DELAY = 2 days;

    string private constant _REASON_DOUBLE_PLEDGE = "double pledge";

    /// @dev Both counters in one slot; ids start at 1 and fit in uint64, the
    ///      width of `BatchHeader.noteId` and `Note.batchIds`.
    uint64 private _noteCount;
    uint64 private _batchCount;

    mapping(uint256 noteId => Note) private _notes;
    mapping(uint256 noteId => mapping(address operator => bool)) private _isNoteOperator;
    mapping(uint256 batchId => BatchHeader) private _batches;
    mapping(uint8 classId => DepreciationClass) private _classes;
    mapping(bytes32 model => uint16 haircutBps) private _modelHaircuts;

    /// @dev A queued value-raising class change; `eta == 0` means none. One slot.
    struct PendingClass {
        uint16 quarterlyMarkdownBps;
        uint16 floorBps;
        uint40 eta;
    }

    /// @dev A queued haircut cut; `eta == 0` means none. One slot.
    struct PendingHaircut {
        uint16 haircutBps;
        uint40 eta;
    }

    mapping(uint8 classId => PendingClass) private _pendingClasses;
    mapping(bytes32 model => PendingHaircut) private _pendingHaircuts;

    /// @param admin receives `DEFAULT_ADMIN_ROLE` and `VALUATION_ROLE`.
    /// @dev Default classes: 0 "fast" (latest-generation training GPUs,
    ///      ~18-month economic life) 16.67 %/quarter; 1 at 20 %/yr
    ///      (5 %/quarter); 2 at 15 %/yr (3.75 %/quarter); all floored at 0.
    constructor(address admin) AccessControlDefaultAdminRules(_ADMIN_TRANSFER_DELAY, _nonZero(admin)) {
        _grantRole(VALUATION_ROLE, admin);
        _setDepreciationClass(0, 1667, 0);
        _setDepreciationClass(1, 500, 0);
        _setDepreciationClass(2, 375, 0);
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
        if (!_classes[registration.classId].exists) revert DepreciationClassUnknown(registration.classId);
        if (registration.inServiceAt > block.timestamp) revert BatchInServiceInFuture(registration.inServiceAt);
        if (registration.issuer == address(0)) revert ZeroAddress();
        batchId = ++_batchCount;
        _batches[batchId] = BatchHeader({
            root: registration.root,
            operator: msg.sender,
            count: registration.count,
            classId: registration.classId,
            inServiceAt: registration.inServiceAt,
            status: BatchStatus.Registered,
            issuer: registration.issuer,
            noteId: 0,
            totalCost: registration.totalCost,
            model: registration.model,
            attestationHash: registration.attestationHash
        });
        emit BatchRegistered(
            batchId,
            msg.sender,
            registration.issuer,
            registration.root,
            registration.count,
            registration.totalCost,
            registration.model,
            registration.classId,
            registration.inServiceAt,
            registration.attestationHash
        );
    }

    /// @inheritdoc ICollateralRegistry
    function attestBatch(uint256 batchId, bytes32 attestationHash) external onlyRole(ATTESTOR_ROLE) {
        BatchHeader storage batch = _batch(batchId);
        if (batch.status != BatchStatus.Registered) {
            revert BatchNotInStatus(batchId, batch.status, BatchStatus.Registered);
        }
        batch.status = BatchStatus.Attested;
        batch.attestationHash = attestationHash;
        emit BatchAttested(batchId, msg.sender, attestationHash);
    }

    /// @inheritdoc ICollateralRegistry
    function pledgeBatch(uint256 batchId, uint256 noteId) external {
        BatchHeader storage batch = _batch(batchId);
        if (msg.sender != batch.operator) revert CallerNotBatchOperator(batchId, msg.sender);
        if (batch.status != BatchStatus.Attested) {
            revert BatchNotInStatus(batchId, batch.status, BatchStatus.Attested);
        }
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
    function proveDoublePledge(
        uint256 batchA,
        GpuLeaf calldata a,
        bytes32[] calldata proofA,
        uint256 batchB,
        GpuLeaf calldata b,
        bytes32[] calldata proofB
    ) external {
        if (a.gpuKey != b.gpuKey) revert ProofsNotConflicting();
        bytes32 leafA = _leafHash(a);
        bytes32 leafB = _leafHash(b);
        if (batchA == batchB && leafA == leafB) revert ProofsNotConflicting();
        BatchHeader storage headerA = _liveBatch(batchA);
        BatchHeader storage headerB = _liveBatch(batchB);
        if (!MerkleProof.verifyCalldata(proofA, headerA.root, leafA)) revert ProofInvalid(batchA, a.gpuKey);
        if (!MerkleProof.verifyCalldata(proofB, headerB.root, leafB)) revert ProofInvalid(batchB, b.gpuKey);

        (uint256 keptBatchId, uint256 voidedBatchId) = batchA < batchB ? (batchA, batchB) : (batchB, batchA);
        if (keptBatchId == voidedBatchId) keptBatchId = 0; // one batch holds the GPU twice: nothing is kept
        emit DoublePledgeProven(a.gpuKey, keptBatchId, voidedBatchId, msg.sender);
        _void(voidedBatchId, voidedBatchId == batchA ? headerA : headerB, a.gpuKey, _REASON_DOUBLE_PLEDGE);
    }

    /// @inheritdoc ICollateralRegistry
    function proveBadLeaf(uint256 batchId, GpuLeaf calldata leaf, bytes32[] calldata proof) external {
        BatchHeader storage batch = _liveBatch(batchId);
        if (!MerkleProof.verifyCalldata(proof, batch.root, _leafHash(leaf))) revert ProofInvalid(batchId, leaf.gpuKey);
        string memory reason = _badLeafReason(batchId, batch, leaf);
        _void(batchId, batch, leaf.gpuKey, reason);
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
        bool raisesValues =
            current.exists && (quarterlyMarkdownBps < current.quarterlyMarkdownBps || floorBps > current.floorBps);
        if (raisesValues) {
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
    function setModelHaircut(bytes32 model, uint16 haircutBps) external onlyRole(VALUATION_ROLE) {
        if (haircutBps > Depreciation.BPS) revert BpsOutOfRange(haircutBps);
        if (haircutBps < _modelHaircuts[model]) {
            uint40 eta = uint40(block.timestamp + VALUATION_CHANGE_DELAY);
            _pendingHaircuts[model] = PendingHaircut(haircutBps, eta);
            emit ModelHaircutQueued(model, haircutBps, eta);
            return;
        }
        _dropPendingHaircut(model);
        _setModelHaircut(model, haircutBps);
    }

    /// @inheritdoc ICollateralRegistry
    function executeModelHaircut(bytes32 model) external onlyRole(VALUATION_ROLE) {
        PendingHaircut memory pending = _pendingHaircuts[model];
        _requireReady(pending.eta);
        delete _pendingHaircuts[model];
        _setModelHaircut(model, pending.haircutBps);
    }

    /// @inheritdoc ICollateralRegistry
    function cancelModelHaircut(bytes32 model) external onlyRole(VALUATION_ROLE) {
        if (!_dropPendingHaircut(model)) revert ValuationChangeNotQueued();
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
        return (_isLive(batch), batch.noteId);
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
    function modelHaircutBps(bytes32 model) external view returns (uint16) {
        return _modelHaircuts[model];
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
    function pendingModelHaircut(bytes32 model) external view returns (uint16 haircutBps, uint40 eta) {
        PendingHaircut memory pending = _pendingHaircuts[model];
        return (pending.haircutBps, pending.eta);
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

    function _setModelHaircut(bytes32 model, uint16 haircutBps) private {
        _modelHaircuts[model] = haircutBps;
        emit ModelHaircutSet(model, haircutBps);
    }

    /// @dev Deletes the class's queued change, if any; true when there was one.
    function _dropPendingClass(uint8 classId) private returns (bool dropped) {
        dropped = _pendingClasses[classId].eta != 0;
        if (dropped) {
            delete _pendingClasses[classId];
            emit DepreciationClassCancelled(classId);
        }
    }

    /// @dev Deletes the model's queued haircut, if any; true when there was one.
    function _dropPendingHaircut(bytes32 model) private returns (bool dropped) {
        dropped = _pendingHaircuts[model].eta != 0;
        if (dropped) {
            delete _pendingHaircuts[model];
            emit ModelHaircutCancelled(model);
        }
    }

    /// @dev Reverts unless a change is queued (`eta != 0`) and its eta has passed.
    function _requireReady(uint40 eta) private view {
        if (eta == 0) revert ValuationChangeNotQueued();
        if (block.timestamp < eta) revert ValuationChangeNotReady(eta, block.timestamp);
    }

    /// @dev Why `leaf` contradicts its batch header, or LeafConsistent.
    function _badLeafReason(uint256 batchId, BatchHeader storage batch, GpuLeaf calldata leaf)
        private
        view
        returns (string memory)
    {
        if (leaf.index >= batch.count) return "index out of range";
        if (leaf.model != batch.model) return "model mismatch";
        if (leaf.classId != batch.classId) return "class mismatch";
        if (leaf.inServiceAt < batch.inServiceAt) return "in service before batch";
        revert LeafConsistent(batchId);
    }

    /// @dev Marks a live batch voided, drops it from its note's live batches
    ///      and counts a defect on the note; emits `BatchVoided` and
    ///      `NoteDefectProven`.
    function _void(uint256 batchId, BatchHeader storage batch, bytes32 gpuKey, string memory reason) private {
        uint256 noteId = batch.noteId;
        batch.status = BatchStatus.Voided;
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
        emit BatchVoided(batchId, noteId, gpuKey, reason);
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

    function _liveBatch(uint256 batchId) private view returns (BatchHeader storage batch) {
        batch = _batch(batchId);
        if (!_isLive(batch)) revert BatchNotLive(batchId);
    }

    function _isLive(BatchHeader storage batch) private view returns (bool) {
        return batch.status == BatchStatus.Pledged && _isLiveNoteStatus(_notes[batch.noteId].status);
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

    function _collateralValue(Note storage note) private view returns (uint256 value) {
        if (!_isLiveNoteStatus(note.status)) return 0;
        uint64[] storage batchIds = note.batchIds;
        for (uint256 i = 0; i < batchIds.length; ++i) {
            BatchHeader storage batch = _batches[batchIds[i]];
            if (batch.status == BatchStatus.Pledged) value += _batchValue(batch);
        }
    }

    /// @dev Rounds down (see {Depreciation-value}).
    function _batchValue(BatchHeader storage batch) private view returns (uint256) {
        if (batch.status == BatchStatus.Voided) return 0;
        DepreciationClass memory class_ = _classes[batch.classId];
        uint256 quarters = Depreciation.quartersElapsed(batch.inServiceAt, block.timestamp);
        uint256 factor = Depreciation.factorBps(class_.quarterlyMarkdownBps, class_.floorBps, quarters);
        return Depreciation.value(batch.totalCost, factor, _modelHaircuts[batch.model]);
    }

    function _leafHash(GpuLeaf calldata leaf) private pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        leaf.index,
                        leaf.gpuKey,
                        leaf.model,
                        leaf.siteId,
                        leaf.attestationHash,
                        leaf.cost,
                        leaf.inServiceAt,
                        leaf.classId
                    )
                )
            )
        );
    }
}
