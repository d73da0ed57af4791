// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
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
///
///         Every servicer is a clone made by the note factory: the note id,
///         tranches, operator and fee recipient are the clone's immutable
///         arguments, the trustee and covenant terms are set by
///         `initialize` in the creating transaction. There is no admin.
contract Servicer is IServicer, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    uint16 public constant BREACH_DSCR = 1;
    uint16 public constant BREACH_LTV = 2;
    uint16 public constant BREACH_UPTIME = 4;
    uint16 public constant BREACH_STALE = 8;
    uint16 public constant BREACH_LOW_UTILIZATION = 16;
    uint16 public constant BREACH_TOPUP_OUTSTANDING = 32;
    uint16 public constant BREACH_DEFAULT = 64;

    uint256 private constant _BPS = 10_000;

    IERC20 private immutable _asset;
    ICollateralRegistry private immutable _registry;
    ITelemetryOracle private immutable _oracle;

    /// @dev The clone's immutable arguments (`abi.encode` of these fields).
    struct Note {
        uint256 noteId; // also the oracle's fleet id
        INoteTranche senior;
        INoteTranche junior; // may be address(0)
        address operator; // equity holder
        address feeRecipient;
    }

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
    /// @dev A terminal distribution (release or end of wind-down).
    struct WrapUp {
        uint256 cashIn;
        uint256 fees;
        uint256 seniorInterest;
        uint256 seniorPrincipal;
        uint256 juniorInterest;
        uint256 juniorPrincipal;
        uint256 residual;
    }

    Payouts private _payouts;
    uint128 private _feeArrears;
    /// @dev Registry defect count already turned into a requirement.
    uint256 private _defectsSeen;
    /// @dev The trustee that stepped in; receives cash that arrives after a
    ///      wind-down with a loss (`_recovery`).
    address private _lienholder;
    /// @dev The note's trustee: steps in after a default. Never zero; only
    ///      the trustee hands the office on.
    address private _trustee;
    uint128 private _recovery;

    /// @notice The implementation the factory clones; it can never be initialised.
    constructor(IERC20 asset_, ICollateralRegistry registry_, ITelemetryOracle oracle_) {
        _asset = asset_;
        _registry = registry_;
        _oracle = oracle_;
        _terms.curePeriod = 1; // locks `initialize` on the implementation
    }

    /// @inheritdoc IServicer
    function initialize(address trustee_, CovenantTerms calldata terms_) external {
        if (_terms.curePeriod != 0) revert AlreadyInitialized();
        _validateTerms(terms_);
        Note memory n = _note();
        if (
            address(n.senior) == address(0) || n.operator == address(0) || n.feeRecipient == address(0)
                || trustee_ == address(0)
        ) revert TermsInvalid("zero address");
        _terms = terms_;
        _trustee = trustee_;
        // The tranches pull what the waterfall pays them.
        _asset.forceApprove(address(n.senior), type(uint256).max);
        if (address(n.junior) != address(0)) _asset.forceApprove(address(n.junior), type(uint256).max);
        emit ServicerInitialised(n.noteId, address(n.senior), address(n.junior), n.operator, n.feeRecipient, terms_);
        emit TrusteeSet(trustee_);
    }

    // ------------------------------------------------------------------
    // Money in
    // ------------------------------------------------------------------

    /// @inheritdoc IServicer
    function payRevenue(uint256 amount) external nonReentrant {
        if (amount == 0) revert AmountZero();
        if (_engine.status == Status.Released) return _lateCash(amount);
        uint128 total = _cash.periodRevenue + amount.toUint128();
        _cash.periodRevenue = total;
        emit RevenueReceived(msg.sender, amount, total);
        _asset.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IServicer
    function postCashCollateral(uint256 amount) external nonReentrant {
        if (amount == 0) revert AmountZero();
        if (_engine.status == Status.Released) return _lateCash(amount);
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
    /// @dev Unallocated cash: drawn capital, or anything paid in by a
    ///      plain transfer. Performing: to the operator. Defaulted or stepped
    ///      in: trapped, for the wind-down waterfall. Released: fee arrears
    ///      first, then the trustee after a wind-down, else the operator.
    function disburseCapital() external nonReentrant returns (uint256 amount) {
        Note memory n = _note();
        amount = _unallocated();
        // Nothing unallocated; a donation only adds cash that goes where this call sends it.
        // slither-disable-next-line incorrect-equality
        if (amount == 0) revert NothingToWithdraw(n.operator);
        Status s = _engine.status;
        if (s == Status.Performing) {
            emit CapitalDisbursed(n.operator, amount);
            _asset.safeTransfer(n.operator, amount);
        } else if (s == Status.Released) {
            _settleLateCash(amount);
        } else {
            _cash.trapped += amount.toUint128();
            emit LateCashTrapped(amount);
        }
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
        Note memory n = _note();
        Engine memory e = _engine;
        if (e.status == Status.Released) revert NotPerforming(e.status);
        CovenantTerms memory t = _terms;
        Cash memory c = _cash;
        (PeriodInputs memory inputs, Waterfall.Due memory due) = _readInputs(n, e.nextPeriod, t, c);
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

        if (result.newStepBps != result.oldStepBps) _applyStep(n, inputs.period, result);
        _payTranches(n, w);
    }

    /// @inheritdoc IServicer
    function cureTopUp() external {
        Engine memory e = _engine;
        // Zero means no top-up is outstanding (a set deadline is at least now + curePeriod >= 1).
        // slither-disable-next-line incorrect-equality
        if (e.topUpDeadline == 0) revert NoTopUpOutstanding();
        uint256 total = _collateralTotal(_note().noteId);
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
        // Zero means no top-up is outstanding, not a moment in time.
        // slither-disable-next-line incorrect-equality
        if (e.topUpDeadline == 0) revert NoTopUpOutstanding();
        if (block.timestamp <= e.topUpDeadline) revert CureNotLapsed(e.topUpDeadline, block.timestamp);
        uint256 total = _collateralTotal(_note().noteId);
        if (total >= e.topUpRequired) revert CureNotLapsed(e.topUpDeadline, block.timestamp);
        _engine.status = Status.Defaulted;
        emit DefaultDeclared(e.topUpRequired, total, e.topUpDeadline);
    }

    /// @inheritdoc IServicer
    /// @dev Cash collateral and the reserve join the trapped cash, so the
    ///      next close pays them down the wind-down waterfall.
    function stepIn() external {
        _requireTrustee();
        Status s = _engine.status;
        if (s != Status.Defaulted) revert NotDefaulted(s);
        _engine.status = Status.SteppedIn;
        _lienholder = msg.sender;
        Cash memory c = _cash;
        uint256 applied = c.collateral;
        c.trapped += c.collateral + c.reserve;
        c.collateral = 0;
        c.reserve = 0;
        _cash = c;
        _registry.transferLiens(_note().noteId, msg.sender);
        emit SteppedIn(msg.sender, applied);
    }

    /// @inheritdoc IServicer
    /// @dev Every tranche Repaid or Cancelled (a cancelled junior never
    ///      blocks). All cash the servicer holds (revenue, trapped, reserve,
    ///      cash collateral) pays fees and their arrears, then interest still
    ///      due, senior first; the rest is the operator's equity. A tranche
    ///      left with unpaid interest is written off, which releases its held
    ///      partial interest to its holders.
    function releaseCollateral() external nonReentrant {
        Note memory n = _note();
        Status s = _engine.status;
        if (s == Status.Released) revert NotPerforming(s);
        if (!_done(n.senior) || !_done(n.junior)) revert NoteNotRepaid();
        Cash memory c = _cash;
        uint256 cash = uint256(c.periodRevenue) + c.trapped + c.reserve + c.collateral + _unallocated();
        delete _cash;
        _engine.status = Status.Released;
        _engine.topUpDeadline = 0;
        _engine.topUpRequired = 0;
        WrapUp memory w = _wrapUp(n, cash, false);
        _payouts.equity += w.residual.toUint128();
        emit NoteReleased(uint256(c.collateral));
        emit WoundUp(w.cashIn, w.fees, w.seniorInterest, w.seniorPrincipal, w.juniorInterest, w.juniorPrincipal, w.residual);
        // The registry lets anyone release a repaid note: it may be done already.
        try _registry.releaseNote(n.noteId) {} catch {}
        _payAndClose(n, w);
    }

    /// @inheritdoc IServicer
    /// @dev All cash pays the wind-down order (fees, senior interest and
    ///      principal, junior interest and principal); what is left after
    ///      both tranches are repaid is the operator's. Tranches still owed
    ///      anything are then written off.
    function finishWindDown() external nonReentrant {
        _requireTrustee();
        Note memory n = _note();
        Status s = _engine.status;
        if (s != Status.SteppedIn) revert NotDefaulted(s);
        Cash memory c = _cash;
        uint256 cash = uint256(c.periodRevenue) + c.trapped + c.reserve + c.collateral + _unallocated();
        delete _cash;
        _engine.status = Status.Released;
        WrapUp memory w = _wrapUp(n, cash, true);
        _payouts.equity += w.residual.toUint128();
        emit WoundUp(w.cashIn, w.fees, w.seniorInterest, w.seniorPrincipal, w.juniorInterest, w.juniorPrincipal, w.residual);
        _payAndClose(n, w);
    }

    /// @inheritdoc IServicer
    /// @dev A cure deadline, once set, is never moved: a new requirement
    ///      while one is outstanding only raises the required level.
    function recordDefects() external returns (uint256 defects) {
        Note memory n = _note();
        // Only the registry's defect count is needed here.
        // slither-disable-next-line unused-return
        (,,,, defects,) = _registry.noteInfo(n.noteId);
        uint256 seen = _defectsSeen;
        if (defects <= seen) revert NoNewDefects(defects);
        _defectsSeen = defects;
        emit DefectsRecorded(defects - seen, defects);
        Engine memory e = _engine;
        if (e.status != Status.Performing) return defects;
        (, uint256 outstanding) = _outstanding(n);
        uint256 limit = e.lowStepOn ? _terms.lowUtilMaxLtvBps : _terms.maxLtvBps;
        uint256 required = Math.mulDiv(outstanding, _BPS, limit, Math.Rounding.Ceil);
        uint256 total = _collateralTotal(n.noteId);
        if (total >= required || required <= e.topUpRequired) return defects;
        e.topUpRequired = required.toUint128();
        // Zero means no deadline is set yet; a set one is never moved.
        // slither-disable-next-line incorrect-equality
        if (e.topUpDeadline == 0) e.topUpDeadline = uint40(block.timestamp + _terms.curePeriod);
        _engine = e;
        emit TopUpRequired(e.nextPeriod, required, required - total, e.topUpDeadline);
    }

    /// @inheritdoc IServicer
    function transferTrustee(address newTrustee) external {
        _requireTrustee();
        if (newTrustee == address(0)) revert TermsInvalid("zero address");
        _trustee = newTrustee;
        emit TrusteeSet(newTrustee);
    }

    /// @inheritdoc IServicer
    function trustee() external view returns (address) {
        return _trustee;
    }

    /// @inheritdoc IServicer
    function withdraw() external nonReentrant returns (uint256 amount) {
        Note memory n = _note();
        Payouts memory p = _payouts;
        bool fees = msg.sender == n.feeRecipient;
        if (fees) {
            amount = p.fees;
            p.fees = 0;
        }
        if (msg.sender == n.operator) {
            amount += p.equity;
            p.equity = 0;
        }
        if (msg.sender == _lienholder && _recovery != 0) {
            amount += _recovery;
            _recovery = 0;
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
        return (_registry.collateralValue(_note().noteId), _cash.collateral);
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
        Note memory n = _note();
        if (account == n.feeRecipient) amount = _payouts.fees;
        if (account == n.operator) amount += _payouts.equity;
        if (account == _lienholder) amount += _recovery;
    }

    /// @notice Registry defects already turned into a top-up requirement.
    function defectsSeen() external view returns (uint256) {
        return _defectsSeen;
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

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    /// @dev Reads the period's report (marking it missed when stale) and
    ///      every money figure once: the covenant inputs and what the
    ///      waterfall owes (status flags are filled in by the caller).
    function _readInputs(Note memory n, uint32 period, CovenantTerms memory t, Cash memory c)
        private
        returns (PeriodInputs memory inputs, Waterfall.Due memory d)
    {
        ITelemetryOracle.Report memory report = _oracle.report(n.noteId, period);
        if (report.status == ITelemetryOracle.ReportStatus.None) {
            if (_oracle.fleet(n.noteId).nextPeriod != period || !_oracle.isStale(n.noteId)) {
                revert PeriodNotClosable(period, uint8(report.status));
            }
            _oracle.markMissed(n.noteId);
            report.status = ITelemetryOracle.ReportStatus.Missed;
        }
        inputs.period = period;
        inputs.reportStatus = uint8(report.status);
        inputs.reportRecordedAt = report.recordedAt;
        if (report.status == ITelemetryOracle.ReportStatus.Reported) {
            Timing memory timing = _fleetTiming(n.noteId);
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
        INoteTranche.State state;
        uint256 seniorRate;
        (state, d.seniorInterest, d.seniorPrincipal, d.seniorOutstanding, seniorRate) = n.senior.servicingState();
        // A cancelled senior owes nothing: a drawn junior is still serviced.
        if (state == INoteTranche.State.Subscription || state == INoteTranche.State.Closed) revert NoteNotActive();
        // Target: `reserveMonths` months of senior interest at the current rate, rounded up.
        d.reserveTarget =
            Math.mulDiv(d.seniorOutstanding * seniorRate, t.reserveMonths, 12 * _BPS, Math.Rounding.Ceil);
        if (address(n.junior) != address(0)) {
            // The junior's state and rate do not enter the waterfall (only the senior's do).
            // slither-disable-next-line unused-return
            (, d.juniorInterest, d.juniorPrincipal, d.juniorOutstanding,) = n.junior.servicingState();
        }
        d.sweepShareBps = t.sweepShareBps;

        uint256 debtService = d.fees + d.seniorInterest + d.seniorPrincipal + d.juniorInterest + d.juniorPrincipal;
        inputs.debtService = debtService.toUint128();
        inputs.collateralValue = _registry.collateralValue(n.noteId).toUint128();
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
        // A deadline once set is never moved by a new requirement.
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

    function _fleetTiming(uint256 noteId) private returns (Timing memory timing) {
        timing = _timing;
        if (timing.periodLength == 0) {
            ITelemetryOracle.FleetConfig memory f = _oracle.fleet(noteId);
            timing = Timing(f.genesis, f.periodLength, f.heartbeat);
            _timing = timing;
        }
    }

    function _applyStep(Note memory n, uint32 period, CovenantResult memory r) private {
        n.senior.setRateStep(r.newStepBps);
        uint256 juniorRate = 0;
        if (address(n.junior) != address(0)) {
            n.junior.setRateStep(r.newStepBps);
            juniorRate = n.junior.currentRateBps();
        }
        emit CouponStepped(period, r.oldStepBps, r.newStepBps, n.senior.currentRateBps(), juniorRate);
    }

    function _payTranches(Note memory n, WaterfallResult memory w) private {
        uint256 seniorPrincipal = uint256(w.seniorPrincipal) + w.sweep;
        if (w.seniorInterest != 0 || seniorPrincipal != 0) n.senior.pay(w.seniorInterest, seniorPrincipal);
        if (w.juniorInterest != 0 || w.juniorPrincipal != 0) n.junior.pay(w.juniorInterest, w.juniorPrincipal);
    }

    function _collateralTotal(uint256 noteId) private view returns (uint256) {
        return _registry.collateralValue(noteId) + _cash.collateral;
    }

    function _requireTrustee() private view {
        if (msg.sender != _trustee) revert NotTrustee(msg.sender);
    }

    /// @dev The clone's immutable arguments.
    function _note() private view returns (Note memory) {
        return abi.decode(Clones.fetchCloneArgs(address(this)), (Note));
    }

    /// @dev Stablecoin held and in no bucket: drawn capital or a plain transfer.
    function _unallocated() private view returns (uint256) {
        Cash memory c = _cash;
        Payouts memory p = _payouts;
        uint256 allocated = uint256(c.periodRevenue) + c.reserve + c.trapped + c.collateral + p.fees + p.equity
            + _recovery;
        uint256 balance = _asset.balanceOf(address(this));
        return balance > allocated ? balance - allocated : 0;
    }

    /// @dev Repaid, cancelled, written off, or no such tranche.
    function _done(INoteTranche tranche) private view returns (bool) {
        if (address(tranche) == address(0)) return true;
        INoteTranche.State s = tranche.state();
        return s == INoteTranche.State.Repaid || s == INoteTranche.State.Cancelled
            || s == INoteTranche.State.WrittenOff;
    }

    /// @dev (senior outstanding, all outstanding).
    function _outstanding(Note memory n) private view returns (uint256 senior, uint256 total) {
        senior = n.senior.principalOutstanding();
        total = senior;
        if (address(n.junior) != address(0)) total += n.junior.principalOutstanding();
    }

    /// @dev How a terminal distribution splits `cash`: fees and arrears,
    ///      then each tranche's interest due (and, winding down, its principal).
    function _wrapUp(Note memory n, uint256 cash, bool windDown) private returns (WrapUp memory w) {
        w.cashIn = cash;
        uint256 fees = _feeArrears;
        w.fees = Math.min(cash, fees);
        cash -= w.fees;
        _feeArrears = uint128(fees - w.fees);
        (w.seniorInterest, w.seniorPrincipal, cash) = _wrapTranche(n.senior, cash, windDown);
        (w.juniorInterest, w.juniorPrincipal, cash) = _wrapTranche(n.junior, cash, windDown);
        w.residual = cash;
        if (w.fees != 0) _payouts.fees += uint128(w.fees);
    }

    function _wrapTranche(INoteTranche tranche, uint256 cash, bool windDown)
        private
        view
        returns (uint256 interest, uint256 principal, uint256 left)
    {
        left = cash;
        if (address(tranche) == address(0)) return (0, 0, left);
        INoteTranche.State s = tranche.state();
        if (s != INoteTranche.State.Active && s != INoteTranche.State.Repaid) return (0, 0, left);
        interest = Math.min(left, tranche.interestDue());
        left -= interest;
        if (windDown) {
            principal = Math.min(left, tranche.principalOutstanding());
            left -= principal;
        }
    }

    /// @dev Pays the tranches what `w` gives them, then writes off every
    ///      tranche still owed anything (its held interest reaches holders).
    function _payAndClose(Note memory n, WrapUp memory w) private {
        _payAndWriteOff(n.senior, w.seniorInterest, w.seniorPrincipal);
        _payAndWriteOff(n.junior, w.juniorInterest, w.juniorPrincipal);
    }

    function _payAndWriteOff(INoteTranche tranche, uint256 interest, uint256 principal) private {
        if (address(tranche) == address(0)) return;
        if (interest != 0 || principal != 0) tranche.pay(interest, principal);
        INoteTranche.State s = tranche.state();
        if (s == INoteTranche.State.Active || (s == INoteTranche.State.Repaid && tranche.interestDue() != 0)) {
            tranche.writeOff();
        }
    }

    /// @dev Pulls `amount` paid in after release and settles it.
    function _lateCash(uint256 amount) private {
        _settleLateCash(amount);
        _asset.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @dev Cash that arrives after release: fee arrears first, then the
    ///      trustee after a wind-down, else the operator.
    function _settleLateCash(uint256 amount) private {
        uint256 fees = Math.min(amount, _feeArrears);
        if (fees != 0) {
            _feeArrears -= uint128(fees);
            _payouts.fees += uint128(fees);
        }
        uint256 rest = amount - fees;
        if (_lienholder != address(0)) _recovery += rest.toUint128();
        else _payouts.equity += rest.toUint128();
        emit LateCashSettled(amount, fees, rest, _lienholder != address(0));
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
