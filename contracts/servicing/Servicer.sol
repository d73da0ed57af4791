// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IServicer} from "../interfaces/IServicer.sol";
import {INoteTranche} from "../interfaces/INoteTranche.sol";
import {ICollateralRegistry} from "../interfaces/ICollateralRegistry.sol";
import {ITelemetryOracle} from "../interfaces/ITelemetryOracle.sol";
import {Waterfall} from "../libraries/Waterfall.sol";

/// @title Servicer of one SPV note: covenant engine, coupon steps, remedies, waterfall
/// @notice See {IServicer}. The servicer is the SPV's cash account: drawn
///         capital arrives here, revenue is paid in here, and it pays the
///         tranches through their `pay`. It holds the tranches' covenant
///         role (coupon step) and manages the note's collateral pool in the
///         registry (release, step-in).
///
///         Coupon steps (documented in README "Coupon steps"):
///         - step-down (`stepDownBps`) is on while the last `stepDownPeriods`
///           periods all reported utilization >= `stepDownUtilBps`; it is
///           removed at the first period below that (or missed), and earned
///           back only after another full run of high periods;
///         - step-up (`stepUpBps`) switches on when the last `stepUpPeriods`
///           periods were all below `stepUpUtilBps` (a missed report counts
///           as below); it is removed at the first period close at which
///           utilization is back at or above `stepUpUtilBps` AND no top-up
///           requirement is outstanding.
contract Servicer is IServicer, AccessControlDefaultAdminRules, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    bytes32 public constant TRUSTEE_ROLE = keccak256("TRUSTEE_ROLE");

    uint16 public constant BREACH_DSCR = 1;
    uint16 public constant BREACH_LTV = 2;
    uint16 public constant BREACH_UPTIME = 4;
    uint16 public constant BREACH_STALE = 8;
    uint16 public constant BREACH_LOW_UTILIZATION = 16;
    uint16 public constant BREACH_TOPUP_OUTSTANDING = 32;
    uint16 public constant BREACH_DEFAULT = 64;

    uint256 private constant _BPS = 10_000;
    /// @dev Initial wait between starting and accepting a transfer of `DEFAULT_ADMIN_ROLE`.
    uint48 private constant _ADMIN_TRANSFER_DELAY = 2 days;

    IERC20 private immutable _asset;
    ICollateralRegistry private immutable _registry;
    ITelemetryOracle private immutable _oracle;
    INoteTranche private immutable _senior;
    INoteTranche private immutable _junior; // may be address(0)
    uint256 private immutable _noteId; // also the oracle's fleet id
    address private immutable _operator; // equity holder
    address private immutable _feeRecipient;

    CovenantTerms private _terms;

    /// @dev Hot state of the covenant engine, one slot.
    struct Engine {
        uint32 nextPeriod;
        Status status;
        uint8 highStreak;
        uint8 lowStreak;
        int16 stepBps;
        bool lowStepOn;
        uint40 topUpDeadline; // 0 when no top-up is outstanding
        uint128 topUpRequired; // collateral level that cures the top-up
    }

    /// @dev Cash buckets held by the servicer, two slots.
    struct Cash {
        uint128 periodRevenue; // revenue paid in since the last close
        uint128 reserve;
        uint128 trapped;
        uint128 collateral; // stablecoin posted as collateral
    }

    /// @dev Released to the fee recipient and the operator, not yet withdrawn; one slot.
    struct Payouts {
        uint128 fees;
        uint128 equity;
    }

    /// @dev The fleet's period timing, copied from the oracle at the first
    ///      close (it never changes there), one slot.
    struct Timing {
        uint40 genesis;
        uint32 periodLength;
        uint32 heartbeat;
    }

    Engine private _engine;
    Timing private _timing;
    Cash private _cash;
    Payouts private _payouts;
    uint128 private _feeArrears;

    constructor(
        IERC20 asset_,
        ICollateralRegistry registry_,
        ITelemetryOracle oracle_,
        uint256 noteId_,
        INoteTranche senior_,
        INoteTranche junior_,
        address admin,
        address operator_,
        address feeRecipient_,
        address trustee,
        CovenantTerms memory terms_
    ) AccessControlDefaultAdminRules(_ADMIN_TRANSFER_DELAY, admin) {
        _validateTerms(terms_);
        if (address(senior_) == address(0) || operator_ == address(0) || feeRecipient_ == address(0)) {
            revert TermsInvalid("zero address");
        }
        _asset = asset_;
        _registry = registry_;
        _oracle = oracle_;
        _noteId = noteId_;
        _senior = senior_;
        _junior = junior_;
        _operator = operator_;
        _feeRecipient = feeRecipient_;
        _terms = terms_;
        // Only a trustee may appoint or remove a trustee: the admin (the
        // issuer) must never be able to make itself the lienholder.
        _setRoleAdmin(TRUSTEE_ROLE, TRUSTEE_ROLE);
        _grantRole(TRUSTEE_ROLE, trustee);
        // The tranches pull what the waterfall pays them.
        asset_.forceApprove(address(senior_), type(uint256).max);
        if (address(junior_) != address(0)) asset_.forceApprove(address(junior_), type(uint256).max);
        emit ServicerInitialised(noteId_, address(senior_), address(junior_), operator_, feeRecipient_, terms_);
    }

    // ------------------------------------------------------------------
    // Money in
    // ------------------------------------------------------------------

    /// @inheritdoc IServicer
    function payRevenue(uint256 amount) external nonReentrant {
        if (amount == 0) revert AmountZero();
        uint128 total = _cash.periodRevenue + amount.toUint128();
        _cash.periodRevenue = total;
        emit RevenueReceived(msg.sender, amount, total);
        _asset.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IServicer
    function postCashCollateral(uint256 amount) external nonReentrant {
        if (amount == 0) revert AmountZero();
        uint128 total = 0;
        if (_engine.status == Status.SteppedIn) {
            _cash.trapped += amount.toUint128(); // paid down the wind-down waterfall
        } else {
            total = _cash.collateral + amount.toUint128();
            _cash.collateral = total;
        }
        emit CashCollateralPosted(msg.sender, amount, total);
        _asset.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IServicer
    function disburseCapital() external nonReentrant returns (uint256 amount) {
        Status s = _engine.status;
        if (s != Status.Performing) revert NotPerforming(s);
        Cash memory c = _cash;
        Payouts memory p = _payouts;
        uint256 allocated = uint256(c.periodRevenue) + c.reserve + c.trapped + c.collateral + p.fees + p.equity;
        uint256 balance = _asset.balanceOf(address(this));
        if (balance <= allocated) revert NothingToWithdraw(_operator);
        amount = balance - allocated;
        emit CapitalDisbursed(_operator, amount);
        _asset.safeTransfer(_operator, amount);
    }

    // ------------------------------------------------------------------
    // Period close
    // ------------------------------------------------------------------

    /// @inheritdoc IServicer
    /// @dev The one external call before the state writes is the immutable
    ///      oracle's `markMissed` (a trusted contract with no call-outs);
    ///      every function that moves money is `nonReentrant`.
    // slither-disable-next-line reentrancy-no-eth
    function closePeriod() external nonReentrant {
        INoteTranche.State seniorState = _senior.state();
        if (seniorState != INoteTranche.State.Active && seniorState != INoteTranche.State.Repaid) {
            revert NoteNotActive();
        }
        Engine memory e = _engine;
        CovenantTerms memory t = _terms;
        Cash memory c = _cash;
        (PeriodInputs memory inputs, Waterfall.Due memory due) = _readInputs(e.nextPeriod, t, c);
        due.windDown = e.status == Status.SteppedIn;
        CovenantResult memory result = _evaluate(e, inputs, t);
        due.sweepOn = result.sweepOn;
        due.equityBlocked = result.equityBlocked;
        WaterfallResult memory w = Waterfall.distribute(due);

        e.nextPeriod += 1;
        _engine = e;
        _cash = Cash(0, w.reserveBalance, w.trapped, c.collateral);
        uint128 arrears = uint128(due.fees - w.fees);
        if (arrears != _feeArrears) _feeArrears = arrears;
        if (w.fees != 0 || w.equity != 0) {
            Payouts memory p = _payouts;
            _payouts = Payouts(p.fees + w.fees, p.equity + w.equity);
        }

        emit PeriodClosed(inputs.period, inputs, result);
        emit WaterfallDistributed(inputs.period, w);

        if (result.newStepBps != result.oldStepBps) _applyStep(inputs.period, result);
        _payTranches(w);
    }

    /// @inheritdoc IServicer
    function cureTopUp() external {
        Engine memory e = _engine;
        if (e.topUpDeadline == 0) revert NoTopUpOutstanding();
        uint256 total = _collateralTotal();
        if (total < e.topUpRequired) revert TopUpNotCured(e.topUpRequired, total);
        emit TopUpCured(e.topUpRequired, total, block.timestamp);
        e.topUpDeadline = 0;
        e.topUpRequired = 0;
        _engine = e;
    }

    /// @inheritdoc IServicer
    function declareDefault() external {
        Engine memory e = _engine;
        if (e.status != Status.Performing) revert NotPerforming(e.status);
        if (e.topUpDeadline == 0) revert NoTopUpOutstanding();
        if (block.timestamp <= e.topUpDeadline) revert CureNotLapsed(e.topUpDeadline, block.timestamp);
        uint256 total = _collateralTotal();
        if (total >= e.topUpRequired) revert CureNotLapsed(e.topUpDeadline, block.timestamp);
        _engine.status = Status.Defaulted;
        emit DefaultDeclared(e.topUpRequired, total, e.topUpDeadline);
    }

    /// @inheritdoc IServicer
    /// @dev Cash collateral and the reserve join the trapped cash, so the
    ///      next close pays them down the wind-down waterfall.
    function stepIn() external onlyRole(TRUSTEE_ROLE) {
        Status s = _engine.status;
        if (s != Status.Defaulted) revert NotDefaulted(s);
        _engine.status = Status.SteppedIn;
        Cash memory c = _cash;
        uint256 applied = c.collateral;
        c.trapped += c.collateral + c.reserve;
        c.collateral = 0;
        c.reserve = 0;
        _cash = c;
        _registry.transferLiens(_noteId, msg.sender);
        emit SteppedIn(msg.sender, applied);
    }

    /// @inheritdoc IServicer
    function releaseCollateral() external nonReentrant {
        if (!_senior.isRepaid() || (address(_junior) != address(0) && !_junior.isRepaid())) revert NoteNotRepaid();
        Cash memory c = _cash;
        uint256 returned = uint256(c.collateral) + c.reserve + c.trapped;
        _cash.collateral = 0;
        _cash.reserve = 0;
        _cash.trapped = 0;
        if (returned != 0) _payouts.equity += returned.toUint128();
        _registry.releaseNote(_noteId);
        emit NoteReleased(returned);
    }

    /// @inheritdoc IServicer
    function withdraw() external nonReentrant returns (uint256 amount) {
        Payouts memory p = _payouts;
        bool fees = msg.sender == _feeRecipient;
        if (fees) {
            amount = p.fees;
            p.fees = 0;
        }
        if (msg.sender == _operator) {
            amount += p.equity;
            p.equity = 0;
        }
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        _payouts = p;
        emit Withdrawn(msg.sender, amount, fees);
        _asset.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc IServicer
    function status() external view returns (Status) {
        return _engine.status;
    }

    /// @inheritdoc IServicer
    function nextPeriodToClose() external view returns (uint32) {
        return _engine.nextPeriod;
    }

    /// @inheritdoc IServicer
    function covenantTerms() external view returns (CovenantTerms memory) {
        return _terms;
    }

    /// @inheritdoc IServicer
    function collateral() external view returns (uint256 collateralValue, uint256 cashCollateral) {
        return (_registry.collateralValue(_noteId), _cash.collateral);
    }

    /// @inheritdoc IServicer
    function topUp() external view returns (uint256 requiredCollateral, uint256 deadline) {
        return (_engine.topUpRequired, _engine.topUpDeadline);
    }

    /// @inheritdoc IServicer
    function reserveBalance() external view returns (uint256) {
        return _cash.reserve;
    }

    /// @inheritdoc IServicer
    function trappedCash() external view returns (uint256) {
        return _cash.trapped;
    }

    /// @inheritdoc IServicer
    function periodRevenueCash() external view returns (uint256) {
        return _cash.periodRevenue;
    }

    /// @inheritdoc IServicer
    function withdrawable(address account) external view returns (uint256 amount) {
        if (account == _feeRecipient) amount = _payouts.fees;
        if (account == _operator) amount += _payouts.equity;
    }

    /// @notice Coupon step state: current step, streaks, whether the low-utilization step is on.
    function stepState() external view returns (int16 stepBps, uint8 highStreak, uint8 lowStreak, bool lowStepOn) {
        Engine memory e = _engine;
        return (e.stepBps, e.highStreak, e.lowStreak, e.lowStepOn);
    }

    /// @notice Fees carried forward unpaid.
    function feeArrears() external view returns (uint256) {
        return _feeArrears;
    }

    /// @notice The contracts this servicer works with.
    function parties()
        external
        view
        returns (address asset, address registry, address oracle, address senior, address junior, uint256 noteId)
    {
        return (address(_asset), address(_registry), address(_oracle), address(_senior), address(_junior), _noteId);
    }

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    /// @dev Reads the period's report (marking it missed when stale) and
    ///      every money figure once: the covenant inputs and what the
    ///      waterfall owes (status flags are filled in by the caller).
    function _readInputs(uint32 period, CovenantTerms memory t, Cash memory c)
        private
        returns (PeriodInputs memory inputs, Waterfall.Due memory d)
    {
        ITelemetryOracle.Report memory report = _oracle.report(_noteId, period);
        if (report.status == ITelemetryOracle.ReportStatus.None) {
            if (_oracle.fleet(_noteId).nextPeriod != period || !_oracle.isStale(_noteId)) {
                revert PeriodNotClosable(period, uint8(report.status));
            }
            _oracle.markMissed(_noteId);
            report.status = ITelemetryOracle.ReportStatus.Missed;
        }
        inputs.period = period;
        inputs.reportStatus = uint8(report.status);
        inputs.reportRecordedAt = report.recordedAt;
        if (report.status == ITelemetryOracle.ReportStatus.Reported) {
            Timing memory timing = _fleetTiming();
            uint256 periodEnd = uint256(timing.genesis) + (uint256(period) + 1) * timing.periodLength;
            inputs.reportLate = report.recordedAt > periodEnd + timing.heartbeat;
        }
        inputs.utilizationBps = report.utilizationBps;
        inputs.uptimeBps = report.uptimeBps;
        inputs.revenueReported = report.revenue;
        inputs.revenueCash = c.periodRevenue;

        d.cashIn = uint256(c.periodRevenue) + c.trapped;
        d.reserveBalance = c.reserve;
        d.fees = uint256(t.feePerPeriod) + _feeArrears;
        d.seniorInterest = _senior.interestDue();
        d.seniorPrincipal = _senior.principalDue();
        d.seniorOutstanding = _senior.principalOutstanding();
        // Target: `reserveMonths` months of senior interest at the current rate, rounded up.
        d.reserveTarget =
            Math.mulDiv(d.seniorOutstanding * _senior.currentRateBps(), t.reserveMonths, 12 * _BPS, Math.Rounding.Ceil);
        if (address(_junior) != address(0)) {
            d.juniorInterest = _junior.interestDue();
            d.juniorPrincipal = _junior.principalDue();
            d.juniorOutstanding = _junior.principalOutstanding();
        }
        d.sweepShareBps = t.sweepShareBps;

        uint256 debtService = d.fees + d.seniorInterest + d.seniorPrincipal + d.juniorInterest + d.juniorPrincipal;
        inputs.debtService = debtService.toUint128();
        inputs.collateralValue = _registry.collateralValue(_noteId).toUint128();
        inputs.cashCollateral = c.collateral;
        inputs.outstanding = (d.seniorOutstanding + d.juniorOutstanding).toUint128();
    }

    /// @dev Covenant tests, coupon step, top-up requirement, cure and
    ///      default; updates `e` in memory (the caller stores it).
    function _evaluate(Engine memory e, PeriodInputs memory inputs, CovenantTerms memory t)
        private
        returns (CovenantResult memory r)
    {
        bool reported = inputs.reportStatus == uint8(ITelemetryOracle.ReportStatus.Reported);
        // A late report is used, but a period that was stale never counts as good.
        bool high = reported && !inputs.reportLate && inputs.utilizationBps >= t.stepDownUtilBps;
        bool low = !reported || inputs.utilizationBps < t.stepUpUtilBps;
        e.highStreak = high ? _inc(e.highStreak) : 0;
        e.lowStreak = low ? _inc(e.lowStreak) : 0;

        uint256 collateralTotal = uint256(inputs.collateralValue) + inputs.cashCollateral;
        // A top-up requirement is checked first: cured, lapsed or still open.
        if (e.topUpDeadline != 0) {
            if (collateralTotal >= e.topUpRequired) {
                emit TopUpCured(e.topUpRequired, collateralTotal, block.timestamp);
                e.topUpDeadline = 0;
                e.topUpRequired = 0;
            } else if (block.timestamp > e.topUpDeadline && e.status == Status.Performing) {
                e.status = Status.Defaulted;
                emit DefaultDeclared(e.topUpRequired, collateralTotal, e.topUpDeadline);
            }
        }

        if (e.lowStreak >= t.stepUpPeriods) e.lowStepOn = true;
        else if (e.lowStepOn && !low && e.topUpDeadline == 0) e.lowStepOn = false;
        bool stepDownOn = e.highStreak >= t.stepDownPeriods;
        r.oldStepBps = e.stepBps;
        r.newStepBps = (stepDownOn ? t.stepDownBps : int16(0)) + (e.lowStepOn ? t.stepUpBps : int16(0));
        e.stepBps = r.newStepBps;
        r.highStreak = e.highStreak;
        r.lowStreak = e.lowStreak;

        r.ltvLimitBps = e.lowStepOn ? t.lowUtilMaxLtvBps : t.maxLtvBps;
        r.ltvBps = _ltvBps(inputs.outstanding, collateralTotal);
        if (r.ltvBps > r.ltvLimitBps && e.topUpDeadline == 0 && e.status == Status.Performing) {
            uint256 required = Math.mulDiv(inputs.outstanding, _BPS, r.ltvLimitBps, Math.Rounding.Ceil);
            e.topUpRequired = required.toUint128();
            e.topUpDeadline = uint40(block.timestamp + t.curePeriod);
            emit TopUpRequired(inputs.period, required, required - collateralTotal, e.topUpDeadline);
        }

        uint256 revenue = Math.min(inputs.revenueReported, inputs.revenueCash);
        r.dscrBps = inputs.debtService == 0
            ? type(uint32).max
            : Math.min(Math.mulDiv(revenue, _BPS, inputs.debtService), type(uint32).max).toUint32();

        uint16 breaches = 0;
        if (r.dscrBps < t.dscrMinBps) breaches |= BREACH_DSCR;
        if (r.ltvBps > r.ltvLimitBps) breaches |= BREACH_LTV;
        if (reported && inputs.uptimeBps < t.uptimeSlaBps) breaches |= BREACH_UPTIME;
        if (!reported || inputs.reportLate) breaches |= BREACH_STALE;
        if (low) breaches |= BREACH_LOW_UTILIZATION;
        if (e.topUpDeadline != 0) breaches |= BREACH_TOPUP_OUTSTANDING;
        if (e.status != Status.Performing) breaches |= BREACH_DEFAULT;
        r.breaches = breaches;
        r.sweepOn = (breaches & (BREACH_DSCR | BREACH_TOPUP_OUTSTANDING | BREACH_DEFAULT)) != 0;
        r.equityBlocked = breaches != 0;
    }

    function _fleetTiming() private returns (Timing memory timing) {
        timing = _timing;
        if (timing.periodLength == 0) {
            ITelemetryOracle.FleetConfig memory f = _oracle.fleet(_noteId);
            timing = Timing(f.genesis, f.periodLength, f.heartbeat);
            _timing = timing;
        }
    }

    function _applyStep(uint32 period, CovenantResult memory r) private {
        _senior.setRateStep(r.newStepBps);
        uint256 juniorRate = 0;
        if (address(_junior) != address(0)) {
            _junior.setRateStep(r.newStepBps);
            juniorRate = _junior.currentRateBps();
        }
        emit CouponStepped(period, r.oldStepBps, r.newStepBps, _senior.currentRateBps(), juniorRate);
    }

    function _payTranches(WaterfallResult memory w) private {
        uint256 seniorPrincipal = uint256(w.seniorPrincipal) + w.sweep;
        if (w.seniorInterest != 0 || seniorPrincipal != 0) _senior.pay(w.seniorInterest, seniorPrincipal);
        if (w.juniorInterest != 0 || w.juniorPrincipal != 0) _junior.pay(w.juniorInterest, w.juniorPrincipal);
    }

    function _collateralTotal() private view returns (uint256) {
        return _registry.collateralValue(_noteId) + _cash.collateral;
    }

    /// @dev outstanding / collateral in bps, rounded up (against the borrower).
    function _ltvBps(uint256 outstanding, uint256 collateralTotal) private pure returns (uint32) {
        if (outstanding == 0) return 0;
        if (collateralTotal == 0) return type(uint32).max;
        return Math.min(Math.mulDiv(outstanding, _BPS, collateralTotal, Math.Rounding.Ceil), type(uint32).max)
            .toUint32();
    }

    function _inc(uint8 streak) private pure returns (uint8) {
        return streak == type(uint8).max ? streak : streak + 1;
    }

    function _validateTerms(CovenantTerms memory t) private pure {
        if (t.maxLtvBps == 0 || t.lowUtilMaxLtvBps == 0 || t.lowUtilMaxLtvBps > t.maxLtvBps) {
            revert TermsInvalid("LTV limits");
        }
        if (t.uptimeSlaBps > _BPS || t.stepDownUtilBps > _BPS || t.stepUpUtilBps > t.stepDownUtilBps) {
            revert TermsInvalid("utilization thresholds");
        }
        if (t.stepDownPeriods == 0 || t.stepUpPeriods == 0) revert TermsInvalid("step look-back");
        if (t.stepDownBps > 0 || t.stepUpBps < 0) revert TermsInvalid("step signs");
        if (t.sweepShareBps > _BPS) revert TermsInvalid("sweep share");
        if (t.curePeriod == 0) revert TermsInvalid("cure period");
    }
}
