// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title One tranche (senior or junior) of an SPV's GPU-backed notes
/// @notice An ERC-20 whose balance is the holder's face amount (original
///         principal, in stablecoin units). Principal is repaid pro rata
///         through a per-face accumulator, so the outstanding principal of a
///         holder is `face x outstanding / totalFace`. Coupons accrue per
///         second on outstanding principal at the current rate into a
///         second accumulator; each holder's entitlement is settled on every
///         balance change, so transfers, repayments and rate changes never
///         move interest between holders. Filled face still in escrow earns
///         from the drawdown like any other; a coupon claim, a redemption or
///         a transfer received takes it out of escrow first.
///
///         Every tranche is a clone created and wired by the note factory in
///         one transaction (`initialize`): its servicer, terms and
///         amortization schedule are fixed from then on. Only the servicer
///         pays and steps the coupon, by address, not by a role an admin
///         could revoke; the reference rate is a term.
///
///         A way out in every terminal state: a cancelled offering refunds
///         every request; an offering not drawn by `subscriptionEnd +
///         DRAWDOWN_WINDOW` can be cancelled by anyone; a repaid tranche
///         redeems; a tranche written off by its servicer (wind-down with a
///         loss, or unpaid interest at release) shares the partial interest
///         it held among the holders of record through `redeem`.
///
///         Subscriptions follow ERC-7540's request -> fulfil -> claim shape.
///         Coupon cash is allocated only when the servicer has paid all the
///         interest due: the funded index then catches up with accrual and
///         every coupon accrued so far becomes claimable. A partial payment
///         is held, unallocated, until the rest arrives, so holders are paid
///         pari passu whatever the order of claims.
///
///         A guardian can pause new subscriptions, drawdown and transfers
///         between holders (`pause` / `unpause`). What holders are owed stays
///         claimable while paused: `claimShares`, `claimCoupon`, `redeem` and
///         the refund of `cancelDepositRequest`; so does servicing (`pay`).
interface INoteTranche {
    enum State {
        Subscription, // window open: requests and cancellations
        Closed, // issuer closed the window; fills being fixed
        Active, // capital drawn; coupons accrue
        Repaid, // all principal repaid: holders redeem
        Cancelled, // offering abandoned before drawdown: requests refundable
        WrittenOff // servicer wound the note down: holders redeem what was recovered
    }

    /// @notice Terms fixed at deployment.
    struct Terms {
        uint256 noteId; // collateral pool in the registry
        uint8 seniority; // 0 senior, 1 junior, ...
        uint128 maxSize; // most principal the tranche will issue
        uint128 minSubscription; // smallest request accepted
        uint40 subscriptionStart;
        uint40 subscriptionEnd;
        uint40 maturity;
        uint16 referenceRateBps;
        uint16 spreadBps;
        uint16 floorRateBps;
        uint16 capRateBps;
        uint16 minCollateralRatioBps; // collateral value / principal at drawdown
    }

    /// @notice An ERC-7540 deposit request (requestId is always 0).
    event DepositRequest(
        address indexed controller, address indexed owner, uint256 indexed requestId, address sender, uint256 assets
    );
    /// @notice Emitted once, at deployment: the terms and the starting rate,
    ///         so a replay needs no view calls.
    event TrancheInitialised(
        address indexed asset, address indexed spv, string name, string symbol, Terms terms, uint256 rateBps
    );
    event DepositRequestCancelled(address indexed controller, uint256 assets);
    event SubscriptionClosed(uint256 totalRequested, uint256 capacity);
    event RequestFulfilled(address indexed controller, uint256 requested, uint256 filled, uint256 refunded);
    event SharesClaimed(address indexed controller, uint256 shares, uint256 refunded);
    /// @notice A coupon claim, a redemption or a transfer received moved the
    ///         holder's face out of escrow first (its refund, if any, stays
    ///         for `claimShares`).
    event EscrowedFaceClaimed(address indexed holder, uint256 shares);
    event DrawnDown(address indexed spv, uint256 principal, uint256 collateralValue, uint256 requiredValue);
    event OfferingCancelled();
    event RateChanged(uint256 oldRateBps, uint256 newRateBps, uint256 referenceRateBps, uint256 spreadBps, int256 stepBps);
    event Paid(uint256 interest, uint256 principal, uint256 interestDueAfter, uint256 outstandingAfter);
    event CouponClaimed(address indexed holder, uint256 amount, uint256 owedAfter);
    event PrincipalRedeemed(address indexed holder, uint256 amount, uint256 faceBurned);
    event AmortizationScheduleSet(uint40[] dueAt, uint16[] cumulativeBps);
    event Repaid();
    /// @notice The servicer closed the tranche for good: `principalLost` and
    ///         `interestLost` will never be paid; `heldReleased` partial
    ///         interest went to holders of record per face (via `redeem`).
    event WrittenOff(uint256 principalLost, uint256 interestLost, uint256 heldReleased);
    /// @notice The guardian paused subscriptions, drawdown and transfers.
    event Paused(address indexed account);
    /// @notice The guardian lifted the pause.
    event Unpaused(address indexed account);

    error StateIs(State current, State expected);
    error SubscriptionWindowClosed(uint256 nowTs, uint256 start, uint256 end);
    error SubscriptionWindowOpen(uint256 nowTs, uint256 end);
    error SubscriptionBelowMinimum(uint256 assets, uint256 minimum);
    error OwnerNotSender(address owner, address sender);
    error NoPendingRequest(address controller);
    error RequestsUnfulfilled(uint256 pendingAssets);
    error NothingToClaim(address holder);
    error ConditionsPrecedentNotMet(uint256 collateralValue, uint256 requiredValue);
    error InterestOverpaid(uint256 amount, uint256 due);
    error PrincipalOverpaid(uint256 amount, uint256 outstanding);
    error RateStepOutOfRange(int256 stepBps);
    error ScheduleInvalid(uint256 index);
    error NotFullyRepaid(uint256 outstanding);
    /// @notice Only the note's servicer may call.
    error NotServicer(address caller);
    error AlreadyInitialized();
    error SpvInvalid(address spv);
    error DrawdownDeadlinePassed(uint256 nowTs, uint256 deadline);
    error DrawdownDeadlineNotPassed(uint256 nowTs, uint256 deadline);
    error TermsInvalid(string reason);
    /// @notice The tranche is paused.
    error EnforcedPause();
    /// @notice The tranche is not paused.
    error ExpectedPause();

    /// @notice How long after `subscriptionEnd` drawdown stays possible;
    ///         after it an undrawn offering can be cancelled by anyone.
    function DRAWDOWN_WINDOW() external view returns (uint256);

    /// @notice Wires a fresh clone, once: the factory calls it in the
    ///         transaction that creates the clone. `issuer` gets the admin,
    ///         issuer and guardian roles; `servicer` is fixed for good.
    function initialize(
        string calldata name_,
        string calldata symbol_,
        address issuer,
        address servicer,
        Terms calldata terms_,
        uint40[] calldata dueAt,
        uint16[] calldata cumulativeBps
    ) external;

    // ---- subscriptions (ERC-7540 shape) ----

    /// @notice Locks `assets` stablecoin as a subscription for `controller`.
    function requestDeposit(uint256 assets, address controller, address owner) external returns (uint256 requestId);

    /// @notice Takes back the caller's pending request while the window is
    ///         open, or at any time once the offering is cancelled.
    function cancelDepositRequest() external returns (uint256 assets);

    /// @notice Closes the window and fixes the pro rata fill. Issuer role,
    ///         at or after `subscriptionEnd`.
    function closeSubscription() external;

    /// @notice Fixes each controller's fill and refund and escrows the
    ///         filled face. Issuer role; any number of calls.
    function fulfil(address[] calldata controllers) external;

    /// @notice Checks the conditions precedent, sends the filled capital
    ///         to the SPV and starts accrual. Issuer role.
    function drawdown() external;

    /// @notice Abandons the offering before drawdown: the issuer, or anyone
    ///         once `subscriptionEnd + DRAWDOWN_WINDOW` has passed undrawn.
    function cancelOffering() external;

    /// @notice Moves the caller's filled face out of escrow and refunds the
    ///         unfilled stablecoin.
    function claimShares() external returns (uint256 shares, uint256 refunded);

    // ---- servicing ----

    /// @notice Pays coupon and principal in, from the caller. Servicer only.
    ///         `interest == type(uint256).max` pays exactly the interest due
    ///         in this block (a view read a block earlier is a second short).
    function pay(uint256 interest, uint256 principal) external;

    /// @notice Sets the covenant step of the coupon. Servicer only.
    function setRateStep(int16 stepBps) external;

    /// @notice Ends the tranche (servicer only, Active or Repaid): held
    ///         partial interest goes to the holders of record, the rest of
    ///         what is unpaid is lost; state becomes WrittenOff.
    function writeOff() external;

    // ---- emergency ----

    /// @notice Pauses `requestDeposit`, `drawdown` and transfers between
    ///         holders. Guardian role. Claims and `pay` stay open.
    function pause() external;

    /// @notice Lifts the pause. Guardian role.
    function unpause() external;

    /// @notice True while paused.
    function paused() external view returns (bool);

    // ---- holders ----

    /// @notice Pays the caller's claimable coupon (face still in escrow is
    ///         claimed first, so its coupon is included). `CouponClaimed`
    ///         carries what the caller has accrued and not yet been paid for
    ///         after the claim, as of the block.
    function claimCoupon() external returns (uint256 amount);

    /// @notice Pays the caller's repaid principal; burns the face once the
    ///         tranche is fully repaid (face still in escrow is claimed first).
    function redeem() external returns (uint256 amount);

    // ---- views ----

    function state() external view returns (State);
    function terms() external view returns (Terms memory);
    function currentRateBps() external view returns (uint256);
    function rateStepBps() external view returns (int256);
    function principalOutstanding() external view returns (uint256);
    function originalPrincipal() external view returns (uint256);
    /// @notice Accrued and not yet paid interest (arrears included).
    function interestDue() external view returns (uint256);
    /// @notice Scheduled principal due now and not yet repaid.
    function principalDue() external view returns (uint256);
    function couponOwed(address holder) external view returns (uint256);
    function couponClaimable(address holder) external view returns (uint256);
    function principalClaimable(address holder) external view returns (uint256);
    function principalOutstandingOf(address holder) external view returns (uint256);
    function pendingDepositRequest(uint256 requestId, address controller) external view returns (uint256);
    function claimableDepositRequest(uint256 requestId, address controller) external view returns (uint256);
    /// @notice Whether `from` may transfer `amount` to `to` now: not paused,
    ///         both whitelisted, enough balance, and not into the escrow.
    function canTransfer(address from, address to, uint256 amount) external view returns (bool);
    function isRepaid() external view returns (bool);
    /// @notice What the servicer reads at a period close, in one call.
    function servicingState()
        external
        view
        returns (State state_, uint256 interestDue_, uint256 principalDue_, uint256 outstanding, uint256 rateBps);
}
