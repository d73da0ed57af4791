// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Telemetry oracle: one signed, fault-tolerant report per fleet and period
/// @notice Each oracle signer observes a fleet's period (utilization, uptime,
///         revenue) and signs its own observation as EIP-712 typed data:
///
///         Observation(uint256 fleetId,uint32 period,uint40 periodStart,
///                     uint40 periodEnd,uint16 utilizationBps,uint16 uptimeBps,
///                     uint128 revenue)
///
///         in the domain {name: "gpucredit TelemetryOracle", version: "1",
///         chainId, verifyingContract}.
///
///         Fault model (Chainlink OCR's `3f < n`): a fleet has `n` signers and a
///         fault bound `f` with `n >= 3f + 1`, and its quorum is exactly
///         `2f + 1`; any other configuration is refused (QuorumRuleBroken) when
///         the fleet is registered and when a signer change is queued. `fleet()`
///         shows n and f. (f = 0, quorum 1, is a single-source fleet that
///         tolerates no faulty signer; a note's term sheet asks for f >= 1.) Anyone
///         may submit at least `2f + 1` signed observations from distinct
///         registered signers, in any order; the contract stores each field's
///         lower median. With `k >= 2f + 1` values, at least `f + 1` of them lie
///         at or below the lower median and at least `f + 1` at or above it, so
///         whatever up to `f` signers sign and whichever quorum anyone submits,
///         every stored field lies within the range of the honest signers'
///         observations (the same as dropping the `f` lowest and `f` highest
///         values first). With up to `f` signers silent, the `n - f >= 2f + 1`
///         others still make a quorum.
///
///         Periods are consecutive, fixed-length windows from the fleet's
///         genesis. A period whose report has not arrived by
///         `periodEnd + heartbeat` is stale and can be marked Missed by
///         anyone: a missing report is a covenant event, never "all good".
///
///         Who signs and whose telemetry the oracle nodes accept (the operator
///         key) change only after `SIGNER_CHANGE_DELAY`: queue -> (delay) ->
///         execute, or cancel, each with its event. A queued change expires
///         `GRACE_PERIOD` after its eta: it is executable only in
///         [eta, eta + GRACE_PERIOD], later it must be queued again. Lenders and the trustee see
///         every change coming. Reports keep being verified against the set in
///         force when they are submitted.
interface ITelemetryOracle {
    enum ReportStatus {
        None,
        Reported,
        Missed
    }

    /// @notice Fixed settings of a fleet.
    struct FleetConfig {
        address operator; // the fleet's operator: signs telemetry pushed to oracle nodes
        address consumer; // the note's servicer, which closes periods on reports
        uint40 genesis; // start of period 0
        uint32 periodLength; // seconds, 30 days by default
        uint32 heartbeat; // grace after period end before the period is stale
        uint8 quorum; // signed observations needed
        uint32 nextPeriod; // the only period a report is accepted for
        uint32 signerVersion; // bumped on every signer set change
        uint8 signerCount; // n, the current signer set's size
        uint8 faultBound; // f = (quorum - 1) / 2: lying or silent signers the fleet tolerates
    }

    /// @notice One signer's observation with its signature (65 bytes r,s,v).
    struct SignedObservation {
        uint16 utilizationBps;
        uint16 uptimeBps;
        uint128 revenue;
        bytes signature;
    }

    /// @notice The stored (median) report of a period.
    struct Report {
        ReportStatus status;
        uint16 utilizationBps;
        uint16 uptimeBps;
        uint128 revenue;
        uint40 recordedAt;
        uint8 observations;
    }

    event FleetRegistered(
        uint256 indexed fleetId,
        address indexed operator,
        address consumer,
        uint40 genesis,
        uint32 periodLength,
        uint32 heartbeat
    );
    event SignersChanged(uint256 indexed fleetId, address[] signers, uint8 quorum, uint32 signerVersion);
    /// @notice A signer-set change was queued; `executeSignerChange` may apply it from `eta`.
    event SignerChangeQueued(uint256 indexed fleetId, address[] signers, uint8 quorum, uint40 eta);
    /// @notice The queued signer-set change was dropped.
    event SignerChangeCancelled(uint256 indexed fleetId);
    /// @notice An operator-key change was queued; `executeOperatorChange` may apply it from `eta`.
    event OperatorChangeQueued(uint256 indexed fleetId, address operator, uint40 eta);
    /// @notice The queued operator-key change was dropped.
    event OperatorChangeCancelled(uint256 indexed fleetId);
    /// @notice The operator key changed (a queued change executed after its delay).
    event FleetOperatorChanged(uint256 indexed fleetId, address operator);
    event ReportSubmitted(
        uint256 indexed fleetId,
        uint32 indexed period,
        uint40 periodStart,
        uint40 periodEnd,
        uint16 utilizationBps,
        uint16 uptimeBps,
        uint128 revenue,
        uint8 observations,
        address submitter
    );
    event ReportMissed(uint256 indexed fleetId, uint32 indexed period, uint40 periodEnd, uint40 staleSince);

    error FleetUnknown(uint256 fleetId);
    error FleetExists(uint256 fleetId);
    error FleetConfigInvalid(string reason);
    error QuorumNotMet(uint256 observations, uint256 quorum);
    error SignerUnknown(address signer);
    /// @notice The same signer's observation appears twice in one report.
    error SignerRepeated(address signer);
    /// @notice `signers` and `quorum` break the fault rule: quorum = 2f + 1 (odd) and
    ///         signers >= 3f + 1; `reason` says which.
    error QuorumRuleBroken(uint256 signers, uint256 quorum, string reason);
    error SignatureInvalid(uint256 index);
    error PeriodNotNext(uint32 period, uint32 expected);
    error PeriodNotEnded(uint32 period, uint40 periodEnd, uint256 nowTs);
    error PeriodNotStale(uint32 period, uint40 staleAt, uint256 nowTs);
    error ValueOutOfRange(string field, uint256 value, uint256 max);
    error SignerChangeNotQueued(uint256 fleetId);
    error SignerChangeNotReady(uint256 fleetId, uint40 eta, uint256 nowTs);
    /// @notice The queued signer change expired at `deadline` (= eta + GRACE_PERIOD);
    ///         queue it again.
    error SignerChangeExpired(uint256 fleetId, uint40 eta, uint256 deadline, uint256 nowTs);
    error OperatorChangeNotQueued(uint256 fleetId);
    error OperatorChangeNotReady(uint256 fleetId, uint40 eta, uint256 nowTs);
    /// @notice The queued operator change expired at `deadline` (= eta + GRACE_PERIOD);
    ///         queue it again.
    error OperatorChangeExpired(uint256 fleetId, uint40 eta, uint256 deadline, uint256 nowTs);

    /// @notice Seconds between queueing a signer-set or operator-key change and executing it (2 days).
    function SIGNER_CHANGE_DELAY() external view returns (uint256);

    /// @notice Seconds after its eta during which a queued signer or operator
    ///         change may still be executed (7 days, as Compound's Timelock).
    function GRACE_PERIOD() external view returns (uint256);

    /// @notice Registers a fleet with its first signer set, at once (a new
    ///         fleet has no lenders relying on it yet). Fleet-admin role.
    /// @dev `quorum` must be `2f + 1` for a fault bound `f` with
    ///      `signerSet.length >= 3f + 1` (at most 16 signers, none zero or
    ///      repeated), else QuorumRuleBroken / FleetConfigInvalid.
    function registerFleet(
        uint256 fleetId,
        address operator,
        address consumer,
        uint40 genesis,
        uint32 periodLength,
        uint32 heartbeat,
        address[] calldata signerSet,
        uint8 quorum
    ) external;

    /// @notice Queues a replacement of the signer set and quorum, executable
    ///         from `block.timestamp + SIGNER_CHANGE_DELAY`. Validated now
    ///         (at most 16 signers, none zero or repeated, quorum = 2f + 1 with
    ///         n >= 3f + 1, else QuorumRuleBroken).
    ///         Replaces any change already queued for the fleet and restarts
    ///         the delay. Fleet-admin role.
    function queueSignerChange(uint256 fleetId, address[] calldata signerSet, uint8 quorum) external;

    /// @notice Applies the queued change in [eta, eta + GRACE_PERIOD] (later
    ///         SignerChangeExpired: queue it again): bumps the
    ///         signer version (observations of the old set stop counting) and
    ///         emits `SignersChanged`. Fleet-admin role.
    function executeSignerChange(uint256 fleetId) external;

    /// @notice Drops the queued change. Fleet-admin role.
    function cancelSignerChange(uint256 fleetId) external;

    /// @notice The queued change of a fleet (`eta` 0 when none).
    function pendingSignerChange(uint256 fleetId)
        external
        view
        returns (address[] memory signerSet, uint8 quorum, uint40 eta);

    /// @notice Queues a change of the fleet's operator key (whose signed telemetry
    ///         the oracle nodes accept), executable from `block.timestamp +
    ///         SIGNER_CHANGE_DELAY`. Replaces any operator change already queued and
    ///         restarts the delay. Fleet-admin role.
    function queueOperatorChange(uint256 fleetId, address operator) external;

    /// @notice Applies the queued operator change in [eta, eta + GRACE_PERIOD]
    ///         (later OperatorChangeExpired: queue it again) and emits
    ///         `FleetOperatorChanged`. Fleet-admin role.
    function executeOperatorChange(uint256 fleetId) external;

    /// @notice Drops the queued operator change. Fleet-admin role.
    function cancelOperatorChange(uint256 fleetId) external;

    /// @notice The queued operator change of a fleet (`eta` 0 when none).
    function pendingOperatorChange(uint256 fleetId) external view returns (address operator, uint40 eta);

    /// @notice Verifies and stores the median report of `period`. Anyone may submit.
    /// @dev Reverts FleetUnknown; PeriodNotNext unless `period == nextPeriod` (replays
    ///      and out-of-order periods); PeriodNotEnded while `block.timestamp < periodEnd`;
    ///      QuorumNotMet below `quorum` (2f + 1) observations; then, per observation i,
    ///      ValueOutOfRange for bps above 10,000, SignatureInvalid(i) when OpenZeppelin's
    ///      ECDSA cannot recover it (length not 65, high s, bad v), SignerUnknown when it
    ///      recovers to an address outside the current signer set, SignerRepeated when
    ///      a signer appears twice. Order does not matter. Each field's median is taken
    ///      on its own: the lower median, element (k - 1) / 2 of the k ascending values,
    ///      which for k >= 2f + 1 has f + 1 values on each side (see the contract notice).
    ///      A report arriving after the heartbeat is still accepted while the period
    ///      has not been marked Missed; its `recordedAt` shows the lateness.
    function submitReport(uint256 fleetId, uint32 period, SignedObservation[] calldata observations) external;

    /// @notice Marks the next period Missed once it is stale. Anyone.
    /// @dev Stale means `block.timestamp > periodEnd + heartbeat`, else PeriodNotStale
    ///      with `staleAt = periodEnd + heartbeat`. Advances `nextPeriod`; ReportMissed
    ///      carries `staleSince = periodEnd + heartbeat`.
    function markMissed(uint256 fleetId) external;

    function fleet(uint256 fleetId) external view returns (FleetConfig memory);
    function signers(uint256 fleetId) external view returns (address[] memory);
    function isSigner(uint256 fleetId, address account) external view returns (bool);
    function report(uint256 fleetId, uint32 period) external view returns (Report memory);
    /// @notice start = genesis + period * periodLength; end = start + periodLength.
    function periodBounds(uint256 fleetId, uint32 period) external view returns (uint40 start, uint40 end);
    /// @notice True when the next period's report is past its heartbeat.
    function isStale(uint256 fleetId) external view returns (bool);
    /// @notice EIP-712 digest a signer signs for an observation.
    function observationDigest(
        uint256 fleetId,
        uint32 period,
        uint16 utilizationBps,
        uint16 uptimeBps,
        uint128 revenue
    ) external view returns (bytes32);
    function domainSeparator() external view returns (bytes32);
}
