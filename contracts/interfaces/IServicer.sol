// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Servicer: the SPV account, covenant engine and revenue waterfall of one note
/// @notice Revenue is paid into this contract. Once a period's telemetry
///         report is on-chain (or the report is stale), anyone can close the
///         period: the servicer tests the covenants (DSCR, LTV, uptime SLA,
///         oracle freshness), moves the coupon step, raises or checks a
///         collateral top-up requirement, and runs the waterfall
///         fees -> senior interest -> junior interest -> scheduled principal
///         -> debt-service reserve -> cash sweep to senior principal -> equity.
///         Every decision is emitted with its inputs and outputs, so an
///         auditor can replay it from events alone.
///
///         Lender protections are fixed: the covenant terms (thresholds,
///         step rules, cure period, fees) are set once in the constructor
///         and have no setter, and nothing can pause `closePeriod`, so
///         covenant tests, top-ups, sweeps and default keep running whatever
///         any key holder does. The trustee is one address, never zero, and
///         only the trustee hands the office on (`transferTrustee`); the
///         servicer has no admin and no roles at all.
interface IServicer {
    enum Status {
        Performing,
        Defaulted, // a top-up cure period lapsed: the trustee may step in
        SteppedIn, // liens moved to the trustee; wind-down waterfall
        Released // terminal: note released or wound down; late cash still has a way out
    }

    /// @notice Covenant and waterfall terms, fixed at deployment.
    struct CovenantTerms {
        uint16 dscrMinBps; // sweep while DSCR is below (12,500 = 1.25x)
        uint16 maxLtvBps; // LTV covenant (7,500 = 75 %)
        uint16 lowUtilMaxLtvBps; // tighter LTV limit while the low-utilization step is on
        uint16 uptimeSlaBps; // uptime SLA (9,900 = 99 %)
        uint16 stepDownUtilBps; // 9,000: utilization at or above ...
        uint8 stepDownPeriods; // ... in this many consecutive periods (3 = 90 days) ...
        int16 stepDownBps; // ... steps the coupon by this (-200)
        uint16 stepUpUtilBps; // 6,000: utilization below ...
        uint8 stepUpPeriods; // ... in this many consecutive periods (1 = 30 days) ...
        int16 stepUpBps; // ... steps the coupon by this (+300) and requires a top-up
        uint16 sweepShareBps; // share of excess cash swept to senior principal
        uint8 reserveMonths; // debt-service reserve target, months of senior interest
        uint32 curePeriod; // seconds to cure a top-up requirement
        uint128 feePerPeriod; // servicing and trustee fees per period
    }

    /// @notice What a period close read: the report and the money figures.
    struct PeriodInputs {
        uint32 period;
        uint8 reportStatus; // ITelemetryOracle.ReportStatus: 1 reported, 2 missed
        bool reportLate; // reported after periodEnd + heartbeat: a freshness breach
        uint40 reportRecordedAt;
        uint16 utilizationBps;
        uint16 uptimeBps;
        uint128 revenueReported; // oracle median
        uint128 revenueCash; // revenue actually paid in during the period
        uint128 debtService; // fees + interest due + scheduled principal due
        uint128 collateralValue; // registry value of live pledged GPUs
        uint128 cashCollateral; // stablecoin posted as collateral
        uint128 outstanding; // principal of all tranches
    }

    /// @notice What the covenant engine decided from the inputs.
    struct CovenantResult {
        uint32 dscrBps; // min(revenueReported, revenueCash) / debtService; max if no debt service
        uint32 ltvBps; // outstanding / (collateralValue + cashCollateral), rounded up
        uint16 ltvLimitBps; // maxLtvBps, or lowUtilMaxLtvBps while the step-up is on
        uint8 highStreak; // consecutive periods at or above stepDownUtilBps
        uint8 lowStreak; // consecutive periods below stepUpUtilBps (missed counts as low)
        int16 oldStepBps;
        int16 newStepBps;
        uint16 breaches; // bitmask of BREACH_* flags
        bool sweepOn;
        bool equityBlocked;
    }

    /// @notice How the period's cash was split.
    struct WaterfallResult {
        uint128 cashIn; // revenue cash + cash trapped last period
        uint128 fees;
        uint128 seniorInterest;
        uint128 juniorInterest;
        uint128 seniorPrincipal; // scheduled, plus wind-down
        uint128 juniorPrincipal; // scheduled, plus wind-down
        uint128 reserveDrawn;
        uint128 reserveAdded;
        uint128 sweep; // prepaid senior principal
        uint128 equity; // released to the operator
        uint128 trapped; // equity blocked: held and re-run next period
        uint128 reserveBalance; // after the period
    }

    /// @notice Emitted once, at deployment: the parties and the covenant
    ///         terms, so a replay needs no view calls.
    event ServicerInitialised(
        uint256 indexed noteId,
        address indexed senior,
        address indexed junior,
        address operator,
        address feeRecipient,
        CovenantTerms terms
    );
    event RevenueReceived(address indexed from, uint256 amount, uint256 periodRevenueCash);
    event CashCollateralPosted(address indexed from, uint256 amount, uint256 cashCollateral);
    event CapitalDisbursed(address indexed operator, uint256 amount);
    event PeriodClosed(uint32 indexed period, PeriodInputs inputs, CovenantResult result);
    event CouponStepped(uint32 indexed period, int16 oldStepBps, int16 newStepBps, uint256 seniorRateBps, uint256 juniorRateBps);
    event TopUpRequired(uint32 indexed period, uint256 requiredCollateral, uint256 shortfall, uint256 deadline);
    event TopUpCured(uint256 requiredCollateral, uint256 collateral, uint256 curedAt);
    event WaterfallDistributed(uint32 indexed period, WaterfallResult result);
    event DefaultDeclared(uint256 requiredCollateral, uint256 collateral, uint256 deadline);
    event SteppedIn(address indexed trustee, uint256 cashCollateralApplied);
    event Withdrawn(address indexed to, uint256 amount, bool fees);
    event NoteReleased(uint256 cashCollateralReturned);
    /// @notice The trustee, at creation and at every handover (never zero).
    event TrusteeSet(address indexed trustee);
    /// @notice Unallocated cash after a default joined the wind-down cash.
    event LateCashTrapped(uint256 amount);
    /// @notice Cash that arrived after release: fee arrears, then the rest
    ///         to the trustee (after a wind-down) or the operator.
    event LateCashSettled(uint256 amount, uint256 fees, uint256 rest, bool toTrustee);
    /// @notice The terminal distribution of every unit the servicer held
    ///         (release or end of wind-down); `residual` is the operator's.
    event WoundUp(
        uint256 cashIn,
        uint256 fees,
        uint256 seniorInterest,
        uint256 seniorPrincipal,
        uint256 juniorInterest,
        uint256 juniorPrincipal,
        uint256 residual
    );
    /// @notice New registry defects on the note were seen (`total` so far).
    event DefectsRecorded(uint256 added, uint256 total);

    error PeriodNotClosable(uint32 period, uint8 reportStatus);
    error NotPerforming(Status status);
    error NotDefaulted(Status status);
    error CureNotLapsed(uint256 deadline, uint256 nowTs);
    error NoTopUpOutstanding();
    error TopUpNotCured(uint256 requiredCollateral, uint256 collateral);
    error NothingToWithdraw(address account);
    error AmountZero();
    error TermsInvalid(string reason);
    error NoteNotActive();
    error NoteNotRepaid();
    error AlreadyInitialized();
    error NotTrustee(address caller);
    error NoNewDefects(uint256 defects);

    /// @notice Wires a fresh clone, once, in the factory's creating
    ///         transaction: the trustee (never zero) and the covenant terms.
    function initialize(address trustee_, CovenantTerms calldata terms_) external;

    /// @notice Pays revenue into the SPV account for the current period.
    function payRevenue(uint256 amount) external;

    /// @notice Posts stablecoin collateral (cures top-ups like pledged GPUs).
    ///         After step-in it goes straight into the wind-down waterfall.
    function postCashCollateral(uint256 amount) external;

    /// @notice Pays out cash the servicer holds outside its buckets (drawn
    ///         capital, plain transfers): to the operator while performing,
    ///         into the wind-down after a default, and after release to fee
    ///         arrears then the trustee (wind-down) or the operator. Anyone.
    function disburseCapital() external returns (uint256 amount);

    /// @notice Closes the next period: covenants, coupon step, remedies, waterfall.
    function closePeriod() external;

    /// @notice Clears an outstanding top-up requirement once collateral suffices. Anyone.
    function cureTopUp() external;

    /// @notice Declares the event of default once a top-up cure period lapsed. Anyone.
    function declareDefault() external;

    /// @notice Trustee step-in after a default: liens move to the trustee, wind-down.
    function stepIn() external;

    /// @notice Once every tranche is Repaid or Cancelled: pays fee arrears
    ///         and interest still due from all the cash held, releases the
    ///         note in the registry, and writes off a tranche left with
    ///         unpaid interest (its held partial interest reaches holders);
    ///         the rest is the operator's. Anyone.
    function releaseCollateral() external;

    /// @notice Ends a wind-down (trustee, after step-in): every unit held
    ///         pays down the wind-down order, then tranches still owed are
    ///         written off (loss); later cash goes to the trustee.
    function finishWindDown() external;

    /// @notice Reads the registry's defect counter for the note; new proven
    ///         defects raise a top-up requirement at once when collateral
    ///         (final value + cash) is short. An outstanding cure deadline
    ///         is never moved. Anyone.
    function recordDefects() external returns (uint256 defects);

    /// @notice Hands the trustee's office to `newTrustee` (not zero). Trustee only.
    function transferTrustee(address newTrustee) external;

    /// @notice The note's trustee.
    function trustee() external view returns (address);

    /// @notice Pays out fees (fee recipient) or released equity (operator).
    function withdraw() external returns (uint256 amount);

    function status() external view returns (Status);
    function nextPeriodToClose() external view returns (uint32);
    function covenantTerms() external view returns (CovenantTerms memory);
    function collateral() external view returns (uint256 collateralValue, uint256 cashCollateral);
    function topUp() external view returns (uint256 requiredCollateral, uint256 deadline);
    function reserveBalance() external view returns (uint256);
    function trappedCash() external view returns (uint256);
    function periodRevenueCash() external view returns (uint256);
    function withdrawable(address account) external view returns (uint256);
}
