// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {ITelemetryOracle} from "../interfaces/ITelemetryOracle.sol";

/// @title Telemetry oracle: one (2f + 1)-of-n signed median report per fleet and period
/// @notice See {ITelemetryOracle}. Storage follows Chainlink's OffchainAggregator:
///         the fields `submitReport` reads and writes for a fleet live in one slot
///         (`FleetState`), and each period's report is one slot (`Report` packs
///         into 27 bytes).
/// @dev Signer membership is a mapping keyed by (fleetId, signerVersion, signer) to
///      the signer's 1-based position in its set: `executeSignerChange` bumps the
///      version, so every earlier set stops counting at once without deleting
///      anything, each look-up is one SLOAD, and the position marks the signer in a
///      bitmap so a repeated signer is refused whatever the observations' order.
///      `DEFAULT_ADMIN_ROLE` moves in two steps (OpenZeppelin
///      AccessControlDefaultAdminRules, initial delay `_ADMIN_TRANSFER_DELAY`).
contract TelemetryOracle is ITelemetryOracle, AccessControlDefaultAdminRules, EIP712 {
    /// @notice Role that registers fleets and changes their signers and operator.
    bytes32 public constant FLEET_ADMIN_ROLE = keccak256("FLEET_ADMIN_ROLE");

    /// @inheritdoc ITelemetryOracle
    uint256 public constant SIGNER_CHANGE_DELAY = 2 days;

    /// @inheritdoc ITelemetryOracle
    uint256 public constant GRACE_PERIOD = 7 days;

    /// @notice EIP-712 type hash of one signer's observation.
    bytes32 public constant OBSERVATION_TYPEHASH = keccak256(
        "Observation(uint256 fleetId,uint32 period,uint40 periodStart,uint40 periodEnd,uint16 utilizationBps,uint16 uptimeBps,uint128 revenue)"
    );

    /// @notice Largest signer set of a fleet (bounds the in-memory median sort).
    uint256 public constant MAX_SIGNERS = 16;

    /// @notice Upper bound of utilization and uptime: 100 %.
    uint256 public constant MAX_BPS = 10_000;

    /// @dev Initial wait between starting and accepting a transfer of `DEFAULT_ADMIN_ROLE`.
    uint48 private constant _ADMIN_TRANSFER_DELAY = 2 days;

    /// @dev The fleet fields `submitReport` and `markMissed` need: 23 bytes, one slot.
    ///      `periodLength != 0` marks a registered fleet.
    struct FleetState {
        uint40 genesis;
        uint32 periodLength;
        uint32 heartbeat;
        uint8 quorum;
        uint32 nextPeriod;
        uint32 signerVersion;
    }

    /// @dev Each field's observed values, kept in ascending order as they arrive.
    struct SortedValues {
        uint256[] utilizationBps;
        uint256[] uptimeBps;
        uint256[] revenue;
    }

    /// @dev The fleet fields nothing on the hot path reads.
    struct FleetParties {
        address operator;
        address consumer;
    }

    /// @dev A queued operator-key change; `eta == 0` means none. One slot.
    struct OperatorChange {
        uint40 eta;
        address operator;
    }

    /// @dev A queued signer-set change; `eta == 0` means none.
    struct SignerChange {
        uint40 eta;
        uint8 quorum;
        address[] signers;
    }

    mapping(uint256 fleetId => FleetState) private _fleets;
    mapping(uint256 fleetId => FleetParties) private _parties;
    mapping(uint256 fleetId => address[]) private _signerLists;
    mapping(uint256 fleetId => mapping(uint32 signerVersion => mapping(address account => uint256 position)))
        private _signerPositionAt;
    mapping(uint256 fleetId => mapping(uint32 period => Report)) private _reports;
    mapping(uint256 fleetId => SignerChange) private _signerChanges;
    mapping(uint256 fleetId => OperatorChange) private _operatorChanges;

    /// @param admin Receives DEFAULT_ADMIN_ROLE and FLEET_ADMIN_ROLE.
    constructor(address admin)
        AccessControlDefaultAdminRules(_ADMIN_TRANSFER_DELAY, admin)
        EIP712("gpucredit TelemetryOracle", "1")
    {
        _grantRole(FLEET_ADMIN_ROLE, admin);
    }

    // ------------------------------------------------------------------
    // Fleet administration
    // ------------------------------------------------------------------

    /// @inheritdoc ITelemetryOracle
    function registerFleet(
        uint256 fleetId,
        address operator,
        address consumer,
        uint40 genesis,
        uint32 periodLength,
        uint32 heartbeat,
        address[] calldata signerSet,
        uint8 quorum
    ) external onlyRole(FLEET_ADMIN_ROLE) {
        if (_fleets[fleetId].periodLength != 0) revert FleetExists(fleetId);
        if (operator == address(0)) revert FleetConfigInvalid("operator is zero");
        if (consumer == address(0)) revert FleetConfigInvalid("consumer is zero");
        if (periodLength == 0) revert FleetConfigInvalid("period length is zero");

        _fleets[fleetId] = FleetState({
            genesis: genesis,
            periodLength: periodLength,
            heartbeat: heartbeat,
            quorum: 0,
            nextPeriod: 0,
            signerVersion: 0
        });
        _parties[fleetId] = FleetParties({operator: operator, consumer: consumer});
        emit FleetRegistered(fleetId, operator, consumer, genesis, periodLength, heartbeat);

        _validateSigners(signerSet, quorum);
        _installSigners(fleetId, signerSet, quorum);
    }

    /// @inheritdoc ITelemetryOracle
    function queueSignerChange(uint256 fleetId, address[] calldata signerSet, uint8 quorum)
        external
        onlyRole(FLEET_ADMIN_ROLE)
    {
        _requireFleet(fleetId);
        _validateSigners(signerSet, quorum);
        uint40 eta = uint40(block.timestamp + SIGNER_CHANGE_DELAY);
        _signerChanges[fleetId] = SignerChange({eta: eta, quorum: quorum, signers: signerSet});
        emit SignerChangeQueued(fleetId, signerSet, quorum, eta);
    }

    /// @inheritdoc ITelemetryOracle
    function executeSignerChange(uint256 fleetId) external onlyRole(FLEET_ADMIN_ROLE) {
        SignerChange memory change = _signerChanges[fleetId];
        if (change.eta == 0) revert SignerChangeNotQueued(fleetId);
        if (block.timestamp < change.eta) revert SignerChangeNotReady(fleetId, change.eta, block.timestamp);
        uint256 deadline = uint256(change.eta) + GRACE_PERIOD;
        if (block.timestamp > deadline) revert SignerChangeExpired(fleetId, change.eta, deadline, block.timestamp);
        delete _signerChanges[fleetId];
        _installSigners(fleetId, change.signers, change.quorum);
    }

    /// @inheritdoc ITelemetryOracle
    function cancelSignerChange(uint256 fleetId) external onlyRole(FLEET_ADMIN_ROLE) {
        if (_signerChanges[fleetId].eta == 0) revert SignerChangeNotQueued(fleetId);
        delete _signerChanges[fleetId];
        emit SignerChangeCancelled(fleetId);
    }

    /// @inheritdoc ITelemetryOracle
    function queueOperatorChange(uint256 fleetId, address operator) external onlyRole(FLEET_ADMIN_ROLE) {
        _requireFleet(fleetId);
        if (operator == address(0)) revert FleetConfigInvalid("operator is zero");
        uint40 eta = uint40(block.timestamp + SIGNER_CHANGE_DELAY);
        _operatorChanges[fleetId] = OperatorChange({eta: eta, operator: operator});
        emit OperatorChangeQueued(fleetId, operator, eta);
    }

    /// @inheritdoc ITelemetryOracle
    function executeOperatorChange(uint256 fleetId) external onlyRole(FLEET_ADMIN_ROLE) {
        OperatorChange memory change = _operatorChanges[fleetId];
        if (change.eta == 0) revert OperatorChangeNotQueued(fleetId);
        if (block.timestamp < change.eta) revert OperatorChangeNotReady(fleetId, change.eta, block.timestamp);
        uint256 deadline = uint256(change.eta) + GRACE_PERIOD;
        if (block.timestamp > deadline) revert OperatorChangeExpired(fleetId, change.eta, deadline, block.timestamp);
        delete _operatorChanges[fleetId];
        _parties[fleetId].operator = change.operator;
        emit FleetOperatorChanged(fleetId, change.operator);
    }

    /// @inheritdoc ITelemetryOracle
    function cancelOperatorChange(uint256 fleetId) external onlyRole(FLEET_ADMIN_ROLE) {
        if (_operatorChanges[fleetId].eta == 0) revert OperatorChangeNotQueued(fleetId);
        delete _operatorChanges[fleetId];
        emit OperatorChangeCancelled(fleetId);
    }

    // ------------------------------------------------------------------
    // Reports
    // ------------------------------------------------------------------

    /// @inheritdoc ITelemetryOracle
    /// @dev Storage: one SLOAD of the fleet's hot slot, one per signer look-up, one
    ///      SSTORE for the report slot and one for `nextPeriod`. Observations stay in
    ///      calldata; signatures go to OZ's `ECDSA.tryRecoverCalldata` (the calldata
    ///      form of `recover`: same high-s / v / length checks) so a failure can be
    ///      reported as SignatureInvalid(index). The Observation struct is ABI-encoded
    ///      once per report; only its three observed words change per signature.
    function submitReport(uint256 fleetId, uint32 period, SignedObservation[] calldata observations) external {
        FleetState storage state = _fleets[fleetId];
        (uint40 periodStart, uint40 periodEnd, uint32 signerVersion) =
            _checkSubmittable(state, fleetId, period, observations.length);
        Report memory median = _verifiedMedian(
            _observationPrefix(fleetId, period, periodStart, periodEnd),
            _signerPositionAt[fleetId][signerVersion],
            observations
        );

        _reports[fleetId][period] = median;
        state.nextPeriod = period + 1;
        emit ReportSubmitted(
            fleetId,
            period,
            periodStart,
            periodEnd,
            median.utilizationBps,
            median.uptimeBps,
            median.revenue,
            median.observations,
            msg.sender
        );
    }

    /// @inheritdoc ITelemetryOracle
    function markMissed(uint256 fleetId) external {
        FleetState storage state = _fleets[fleetId];
        uint256 periodLength = state.periodLength;
        uint32 period = state.nextPeriod;
        if (periodLength == 0) revert FleetUnknown(fleetId);

        (, uint40 periodEnd) = _bounds(state.genesis, periodLength, period);
        uint40 staleAt = periodEnd + state.heartbeat;
        if (block.timestamp <= staleAt) revert PeriodNotStale(period, staleAt, block.timestamp);

        _reports[fleetId][period] = Report({
            status: ReportStatus.Missed,
            utilizationBps: 0,
            uptimeBps: 0,
            revenue: 0,
            recordedAt: uint40(block.timestamp),
            observations: 0
        });
        state.nextPeriod = period + 1;
        emit ReportMissed(fleetId, period, periodEnd, staleAt);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc ITelemetryOracle
    function fleet(uint256 fleetId) external view returns (FleetConfig memory) {
        FleetState memory state = _requireFleet(fleetId);
        FleetParties memory parties = _parties[fleetId];
        return FleetConfig({
            signerCount: uint8(_signerLists[fleetId].length), // <= MAX_SIGNERS
            faultBound: (state.quorum - 1) / 2, // quorum = 2f + 1 >= 1 (_validateSigners)
            operator: parties.operator,
            consumer: parties.consumer,
            genesis: state.genesis,
            periodLength: state.periodLength,
            heartbeat: state.heartbeat,
            quorum: state.quorum,
            nextPeriod: state.nextPeriod,
            signerVersion: state.signerVersion
        });
    }

    /// @inheritdoc ITelemetryOracle
    function signers(uint256 fleetId) external view returns (address[] memory) {
        _requireFleet(fleetId);
        return _signerLists[fleetId];
    }

    /// @inheritdoc ITelemetryOracle
    /// @dev False for an unregistered fleet.
    function isSigner(uint256 fleetId, address account) external view returns (bool) {
        return _signerPositionAt[fleetId][_fleets[fleetId].signerVersion][account] != 0;
    }

    /// @inheritdoc ITelemetryOracle
    function pendingSignerChange(uint256 fleetId)
        external
        view
        returns (address[] memory signerSet, uint8 quorum, uint40 eta)
    {
        SignerChange storage change = _signerChanges[fleetId];
        return (change.signers, change.quorum, change.eta);
    }

    /// @inheritdoc ITelemetryOracle
    function pendingOperatorChange(uint256 fleetId) external view returns (address operator, uint40 eta) {
        OperatorChange memory change = _operatorChanges[fleetId];
        return (change.operator, change.eta);
    }

    /// @inheritdoc ITelemetryOracle
    /// @dev Status None for a period not reported or missed yet.
    function report(uint256 fleetId, uint32 period) external view returns (Report memory) {
        _requireFleet(fleetId);
        return _reports[fleetId][period];
    }

    /// @inheritdoc ITelemetryOracle
    /// @dev start = genesis + period * periodLength, end = start + periodLength.
    function periodBounds(uint256 fleetId, uint32 period) external view returns (uint40 start, uint40 end) {
        FleetState memory state = _requireFleet(fleetId);
        return _bounds(state.genesis, state.periodLength, period);
    }

    /// @inheritdoc ITelemetryOracle
    function isStale(uint256 fleetId) external view returns (bool) {
        FleetState memory state = _requireFleet(fleetId);
        (, uint40 periodEnd) = _bounds(state.genesis, state.periodLength, state.nextPeriod);
        return block.timestamp > uint256(periodEnd) + state.heartbeat;
    }

    /// @inheritdoc ITelemetryOracle
    function observationDigest(
        uint256 fleetId,
        uint32 period,
        uint16 utilizationBps,
        uint16 uptimeBps,
        uint128 revenue
    ) external view returns (bytes32) {
        FleetState memory state = _requireFleet(fleetId);
        (uint40 periodStart, uint40 periodEnd) = _bounds(state.genesis, state.periodLength, period);
        return _observationDigest(
            _observationPrefix(fleetId, period, periodStart, periodEnd), utilizationBps, uptimeBps, revenue
        );
    }

    /// @inheritdoc ITelemetryOracle
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    /// @dev The fault rule: quorum = 2f + 1 and n >= 3f + 1, else QuorumRuleBroken;
    ///      n <= 16 and no signer zero or repeated, else FleetConfigInvalid (pairwise:
    ///      n <= 16, so at most 120 comparisons). f = 0 (quorum 1) is a fleet that
    ///      tolerates no faulty signer and says so (`fleet().faultBound`); notes'
    ///      term sheets ask for f >= 1.
    function _validateSigners(address[] calldata signerSet, uint8 quorum) private pure {
        uint256 count = signerSet.length;
        if (count > MAX_SIGNERS) revert FleetConfigInvalid("more than 16 signers");
        if (quorum % 2 == 0) revert QuorumRuleBroken(count, quorum, "quorum must be 2f + 1: odd");
        // f = (quorum - 1) / 2 exactly (quorum is odd), so 3f + 1 = 3 * (quorum - 1) / 2 + 1.
        if (count < (3 * (uint256(quorum) - 1)) / 2 + 1) {
            revert QuorumRuleBroken(count, quorum, "signers must be at least 3f + 1");
        }
        for (uint256 i; i < count; ++i) {
            address signer = signerSet[i];
            if (signer == address(0)) revert FleetConfigInvalid("signer is zero");
            for (uint256 j; j < i; ++j) {
                if (signerSet[j] == signer) revert FleetConfigInvalid("duplicate signer");
            }
        }
    }

    /// @dev Installs a validated signer set under a new signer version.
    function _installSigners(uint256 fleetId, address[] memory signerSet, uint8 quorum) private {
        FleetState storage state = _fleets[fleetId];
        uint32 signerVersion = state.signerVersion + 1;
        mapping(address => uint256) storage positionAt = _signerPositionAt[fleetId][signerVersion];
        uint256 count = signerSet.length;
        for (uint256 i; i < count; ++i) {
            positionAt[signerSet[i]] = i + 1;
        }
        _signerLists[fleetId] = signerSet;
        state.quorum = quorum;
        state.signerVersion = signerVersion;
        emit SignersChanged(fleetId, signerSet, quorum, signerVersion);
    }

    /// @dev The period checks of `submitReport`; returns the period bounds and the
    ///      signer version the observations must come from.
    function _checkSubmittable(FleetState storage state, uint256 fleetId, uint32 period, uint256 count)
        private
        view
        returns (uint40 periodStart, uint40 periodEnd, uint32 signerVersion)
    {
        FleetState memory hot = state;
        if (hot.periodLength == 0) revert FleetUnknown(fleetId);
        if (period != hot.nextPeriod) revert PeriodNotNext(period, hot.nextPeriod);
        (periodStart, periodEnd) = _bounds(hot.genesis, hot.periodLength, period);
        if (periodEnd > block.timestamp) revert PeriodNotEnded(period, periodEnd, block.timestamp);
        if (count < hot.quorum) revert QuorumNotMet(count, hot.quorum);
        signerVersion = hot.signerVersion;
    }

    /// @dev Verifies every observation and returns the Reported median of each field.
    ///      Median rule: the lower median, element (n - 1) / 2 of the ascending
    ///      values (the index rounds down), so with an even count the smaller middle
    ///      value counts, the conservative side for lenders. With n >= quorum = 2f + 1,
    ///      (n - 1) / 2 >= f values lie below it and n - 1 - (n - 1) / 2 >= f above it,
    ///      so f liars on one side cannot carry it past the honest values.
    ///      Distinct signers: each signer's position sets one bit of `seen`, so a
    ///      repeat is refused in any order.
    function _verifiedMedian(
        bytes memory prefix,
        mapping(address => uint256) storage positionOf,
        SignedObservation[] calldata observations
    ) private view returns (Report memory median) {
        uint256 n = observations.length;
        SortedValues memory sorted = SortedValues(new uint256[](n), new uint256[](n), new uint256[](n));
        uint256 seen = 0; // bit i: the signer at position i was seen
        for (uint256 i; i < n;) {
            address signer = _verifyObservation(prefix, observations[i], i, sorted);
            uint256 position = positionOf[signer];
            if (position == 0) revert SignerUnknown(signer);
            uint256 bit = 1 << position; // position <= MAX_SIGNERS
            if (seen & bit != 0) revert SignerRepeated(signer);
            seen |= bit;
            unchecked {
                ++i; // i < n <= calldata size
            }
        }

        uint256 mid = (n - 1) / 2; // n >= quorum >= 1
        median.status = ReportStatus.Reported;
        median.utilizationBps = uint16(sorted.utilizationBps[mid]);
        median.uptimeBps = uint16(sorted.uptimeBps[mid]);
        median.revenue = uint128(sorted.revenue[mid]);
        median.recordedAt = uint40(block.timestamp);
        median.observations = uint8(n);
    }

    /// @dev Range-checks observation `index`, recovers its signer (or reverts
    ///      ValueOutOfRange / SignatureInvalid(index)) and inserts its values into
    ///      `sorted`, which holds the ascending values of observations 0 .. index-1.
    function _verifyObservation(
        bytes memory prefix,
        SignedObservation calldata observation,
        uint256 index,
        SortedValues memory sorted
    ) private view returns (address signer) {
        uint256 utilizationBps = observation.utilizationBps;
        uint256 uptimeBps = observation.uptimeBps;
        uint256 revenue = observation.revenue;
        if (utilizationBps > MAX_BPS) revert ValueOutOfRange("utilizationBps", utilizationBps, MAX_BPS);
        if (uptimeBps > MAX_BPS) revert ValueOutOfRange("uptimeBps", uptimeBps, MAX_BPS);

        (address recovered, ECDSA.RecoverError recoverError, bytes32 errorArg) = ECDSA.tryRecoverCalldata(
            _observationDigest(prefix, utilizationBps, uptimeBps, revenue), observation.signature
        );
        // `errorArg` (the bad length or s) is only set on failure; the index names the culprit.
        if (recoverError != ECDSA.RecoverError.NoError || errorArg != bytes32(0)) revert SignatureInvalid(index);
        signer = recovered;

        _insertSorted(sorted.utilizationBps, index, utilizationBps);
        _insertSorted(sorted.uptimeBps, index, uptimeBps);
        _insertSorted(sorted.revenue, index, revenue);
    }

    /// @dev The ABI-encoded Observation struct of one fleet period with the three
    ///      observed fields left zero; `_observationDigest` fills them in. Built once
    ///      per report instead of once per observation.
    function _observationPrefix(uint256 fleetId, uint32 period, uint40 periodStart, uint40 periodEnd)
        private
        pure
        returns (bytes memory)
    {
        return abi.encode(OBSERVATION_TYPEHASH, fleetId, period, periodStart, periodEnd, 0, 0, 0);
    }

    /// @dev EIP-712 digest of an Observation: writes the observed fields into the
    ///      last three words of `prefix` (8 words, see `_observationPrefix`) and
    ///      hashes it as hashStruct(Observation).
    function _observationDigest(bytes memory prefix, uint256 utilizationBps, uint256 uptimeBps, uint256 revenue)
        private
        view
        returns (bytes32 digest)
    {
        bytes32 structHash;
        assembly ("memory-safe") {
            let words := add(prefix, 0x20)
            mstore(add(words, 0xa0), utilizationBps)
            mstore(add(words, 0xc0), uptimeBps)
            mstore(add(words, 0xe0), revenue)
            structHash := keccak256(words, 0x100)
        }
        return _hashTypedDataV4(structHash);
    }

    /// @dev Loads a registered fleet's hot state, or reverts FleetUnknown.
    function _requireFleet(uint256 fleetId) private view returns (FleetState memory state) {
        state = _fleets[fleetId];
        if (state.periodLength == 0) revert FleetUnknown(fleetId);
    }

    /// @dev Period bounds; reverts (SafeCast) if they do not fit uint40.
    function _bounds(uint256 genesis, uint256 periodLength, uint32 period)
        private
        pure
        returns (uint40 start, uint40 end)
    {
        uint256 start_ = genesis + uint256(period) * periodLength;
        return (SafeCast.toUint40(start_), SafeCast.toUint40(start_ + periodLength));
    }

    /// @dev Inserts `value` into the ascending prefix `values[0 .. length)`, one step of
    ///      an insertion sort (a report has at most 16 observations from distinct
    ///      signers, so this beats any heap or selection scheme). The caller guarantees `length < values.length`, so the assembly
    ///      skips the bounds checks: it only touches `values[0 .. length]`.
    function _insertSorted(uint256[] memory values, uint256 length, uint256 value) private pure {
        assembly ("memory-safe") {
            let data := add(values, 0x20)
            let j := length
            for {} j { j := sub(j, 1) } {
                let previous := mload(add(data, shl(5, sub(j, 1))))
                if iszero(gt(previous, value)) { break }
                mstore(add(data, shl(5, j)), previous)
            }
            mstore(add(data, shl(5, j)), value)
        }
    }
}
