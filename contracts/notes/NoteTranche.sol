// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {INoteTranche} from "../interfaces/INoteTranche.sol";
import {IIdentityRegistry} from "../interfaces/IIdentityRegistry.sol";
import {ICollateralRegistry} from "../interfaces/ICollateralRegistry.sol";

/// @title NoteTranche: one whitelisted, coupon-bearing tranche of an SPV note
/// @notice See {INoteTranche}. Two accumulators per unit of face drive every
///         holder's money: `interestIndex` (coupon accrued per face) and
///         `principalIndex` (principal repaid per face). Each balance change
///         settles both parties first, so entitlements never move with the
///         tokens. Filled face is minted to this contract (the escrow) at
///         drawdown and moved to lenders when they claim.
///         `DEFAULT_ADMIN_ROLE` (the issuer at deployment) moves in two steps
///         with a delay (OpenZeppelin AccessControlDefaultAdminRules).
contract NoteTranche is INoteTranche, ERC20, AccessControlDefaultAdminRules, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");
    /// @notice May pause and unpause subscriptions, drawdown and transfers.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");

    /// @inheritdoc INoteTranche
    uint256 public constant DRAWDOWN_WINDOW = 30 days;

    /// @notice Largest coupon step the covenant engine may set, either way.
    int256 public constant MAX_STEP_BPS = 2_000;

    uint256 private constant _INDEX_SCALE = 1e27;
    uint256 private constant _BPS = 10_000;
    uint256 private constant _YEAR = 365 days;
    /// @dev Initial wait between starting and accepting a transfer of `DEFAULT_ADMIN_ROLE`.
    uint48 private constant _ADMIN_TRANSFER_DELAY = 2 days;

    IERC20 private immutable _asset;
    IIdentityRegistry private immutable _identities;
    ICollateralRegistry private immutable _registry;
    uint8 private immutable _decimals;

    Terms private _terms;
    /// @dev The note's servicer: the SPV account that receives drawn
    ///      capital, pays (`pay`) and steps the coupon (`setRateStep`). Set
    ///      once by `initialize`; no role, so no admin can take it away.
    address private _spv;
    string private _name;
    string private _symbol;

    /// @dev Hot accrual state, one slot (29 bytes). The pause flag lives here
    ///      because every transfer reads this slot anyway.
    struct Accrual {
        uint128 interestIndex; // coupon accrued per face, scaled 1e27
        uint40 lastAccrualAt;
        uint16 rateBps; // current rate, clamped to [floor, cap]
        uint16 referenceRateBps;
        int16 rateStepBps;
        State state;
        bool paused; // guardian pause: subscriptions, drawdown, transfers
    }

    /// @dev Principal state, one slot.
    struct Principal {
        uint128 principalIndex; // principal repaid per face, scaled 1e27
        uint128 outstanding;
    }

    /// @dev Coupon funding, one slot. Interest is allocated to holders only
    ///      when everything due is covered: `fundedIndex` then jumps to the
    ///      current index and `epoch` moves on. Partial payments wait in
    ///      `held` until the rest arrives, so holders are paid pari passu.
    struct Funding {
        uint128 fundedIndex; // every coupon accrued up to this index is paid for
        uint32 epoch; // number of times funding caught up with accrual
        uint96 held; // partial interest paid in, not yet allocated
    }

    /// @dev Coupon cash totals, one slot.
    struct CouponCash {
        uint128 funded; // interest allocated to holders, ever
        uint128 claimed; // coupons paid out, ever
    }

    struct Checkpoint {
        uint128 interestIndex;
        uint96 principalIndex; // principal per face never exceeds 1e27
        uint32 epoch; // funding epoch of `Owed.couponPending`
    }

    struct Owed {
        uint128 couponFunded; // claimable
        uint128 couponPending; // accrued above the funded index at `Checkpoint.epoch`
    }

    struct Fill {
        uint128 shares;
        uint128 refund;
    }

    struct Amortization {
        uint40 dueAt;
        uint16 cumulativeBps;
    }

    Accrual private _accrual;
    Principal private _principal;
    Funding private _funding;
    CouponCash private _cash;
    /// @dev Face minted at drawdown. Total face only changes while nothing
    ///      accrues (the drawdown mint, burns after full repayment), so the
    ///      exact total of holders' coupon entitlements, scaled 1e27, is
    ///      `interestIndex x _originalPrincipal`: no running sum is stored.
    uint128 private _originalPrincipal;

    mapping(address => Checkpoint) private _checkpoints;
    mapping(address => Owed) private _owed;
    mapping(address => uint256) private _principalOwed;

    mapping(address => uint256) private _pending;
    mapping(address => Fill) private _fills;
    uint256 private _totalPending; // requested and not yet fulfilled
    uint256 private _totalRequested; // fixed when the window closes
    uint256 private _totalFilled;

    Amortization[] private _schedule;

    error TransferToEscrow();

    /// @notice The implementation every note's tranche clones: the stablecoin
    ///         and the two registries are shared by all notes of one factory.
    ///         The implementation itself can never be initialised.
    constructor(IERC20 asset_, IIdentityRegistry identities_, ICollateralRegistry registry_)
        ERC20("", "")
        AccessControlDefaultAdminRules(_ADMIN_TRANSFER_DELAY, msg.sender)
    {
        _asset = asset_;
        _identities = identities_;
        _registry = registry_;
        _decimals = IERC20Metadata(address(asset_)).decimals();
        _spv = address(this); // locks `initialize` on the implementation
    }

    /// @inheritdoc INoteTranche
    function initialize(
        string calldata name_,
        string calldata symbol_,
        address issuer,
        address servicer_,
        Terms calldata terms_,
        uint40[] calldata dueAt,
        uint16[] calldata cumulativeBps
    ) external {
        if (_spv != address(0)) revert AlreadyInitialized();
        if (servicer_ == address(0) || issuer == address(0)) revert SpvInvalid(servicer_);
        _validateTerms(terms_);
        _name = name_;
        _symbol = symbol_;
        _terms = terms_;
        _spv = servicer_;
        _accrual.referenceRateBps = terms_.referenceRateBps;
        _accrual.rateBps = _clampedRate(terms_.referenceRateBps, 0).toUint16();
        _grantRole(DEFAULT_ADMIN_ROLE, issuer);
        _grantRole(ISSUER_ROLE, issuer);
        _grantRole(GUARDIAN_ROLE, issuer);
        emit TrancheInitialised(address(_asset), servicer_, name_, symbol_, terms_, _accrual.rateBps);
        _setSchedule(dueAt, cumulativeBps);
    }

    // ------------------------------------------------------------------
    // Subscriptions
    // ------------------------------------------------------------------

    /// @inheritdoc INoteTranche
    function requestDeposit(uint256 assets, address controller, address owner)
        external
        nonReentrant
        returns (uint256 requestId)
    {
        _requireState(State.Subscription);
        _requireNotPaused();
        Terms storage t = _terms;
        if (block.timestamp < t.subscriptionStart || block.timestamp > t.subscriptionEnd) {
            revert SubscriptionWindowClosed(block.timestamp, t.subscriptionStart, t.subscriptionEnd);
        }
        if (assets < t.minSubscription || assets == 0) revert SubscriptionBelowMinimum(assets, t.minSubscription);
        if (owner != msg.sender) revert OwnerNotSender(owner, msg.sender);
        _identities.requireVerified(controller);

        _pending[controller] += assets;
        _totalPending += assets;
        emit DepositRequest(controller, owner, 0, msg.sender, assets);
        _asset.safeTransferFrom(msg.sender, address(this), assets); // msg.sender == owner
        return 0;
    }

    /// @inheritdoc INoteTranche
    function cancelDepositRequest() external nonReentrant returns (uint256 assets) {
        State s = _accrual.state;
        if (s != State.Subscription && s != State.Cancelled) revert StateIs(s, State.Subscription);
        assets = _pending[msg.sender];
        if (assets == 0) revert NoPendingRequest(msg.sender);
        _pending[msg.sender] = 0;
        _totalPending -= assets;
        emit DepositRequestCancelled(msg.sender, assets);
        _asset.safeTransfer(msg.sender, assets);
    }

    /// @inheritdoc INoteTranche
    function closeSubscription() external onlyRole(ISSUER_ROLE) {
        _requireState(State.Subscription);
        uint256 end = _terms.subscriptionEnd;
        if (block.timestamp < end) revert SubscriptionWindowOpen(block.timestamp, end);
        _totalRequested = _totalPending;
        _accrual.state = State.Closed;
        emit SubscriptionClosed(_totalRequested, _terms.maxSize);
    }

    /// @inheritdoc INoteTranche
    /// @dev Oversubscription is cut pro rata: fill = requested x maxSize /
    ///      totalRequested, rounded down, so the tranche never exceeds its
    ///      size; the lender gets the rest back (fill + refund = requested).
    function fulfil(address[] calldata controllers) external onlyRole(ISSUER_ROLE) {
        _requireState(State.Closed);
        uint256 requested = _totalRequested;
        uint256 capacity = _terms.maxSize;
        for (uint256 i = 0; i < controllers.length; ++i) {
            address controller = controllers[i];
            uint256 assets = _pending[controller];
            if (assets == 0) continue; // already fulfilled: batches can be retried
            uint256 filled = requested <= capacity ? assets : Math.mulDiv(assets, capacity, requested);
            uint256 refund = assets - filled;
            _pending[controller] = 0;
            _totalPending -= assets;
            _totalFilled += filled;
            _fills[controller] = Fill(filled.toUint128(), refund.toUint128());
            emit RequestFulfilled(controller, assets, filled, refund);
        }
    }

    /// @inheritdoc INoteTranche
    /// @dev Conditions precedent: every request fulfilled, something filled,
    ///      and the note's live pledged collateral worth at least
    ///      `minCollateralRatioBps` of all its tranches' principal including
    ///      this drawdown (required value rounded up).
    function drawdown() external onlyRole(ISSUER_ROLE) nonReentrant {
        _requireState(State.Closed);
        _requireNotPaused();
        if (_totalPending != 0) revert RequestsUnfulfilled(_totalPending);
        uint256 deadline = uint256(_terms.subscriptionEnd) + DRAWDOWN_WINDOW;
        if (block.timestamp > deadline) revert DrawdownDeadlinePassed(block.timestamp, deadline);
        uint256 principal = _totalFilled;
        uint256 noteId = _terms.noteId;
        uint256 value = _registry.collateralValue(noteId);
        uint256 required = Math.mulDiv(
            _registry.outstandingPrincipal(noteId) + principal,
            _terms.minCollateralRatioBps,
            _BPS,
            Math.Rounding.Ceil
        );
        if (principal == 0 || value < required) revert ConditionsPrecedentNotMet(value, required);

        _accrual.state = State.Active;
        _accrual.lastAccrualAt = uint40(block.timestamp);
        _principal.outstanding = principal.toUint128();
        _originalPrincipal = principal.toUint128();
        _mint(address(this), principal);
        address spvAccount = _spv;
        emit DrawnDown(spvAccount, principal, value, required);
        _asset.safeTransfer(spvAccount, principal);
    }

    /// @inheritdoc INoteTranche
    /// @dev The issuer at any time before drawdown; anyone once the
    ///      drawdown deadline has passed undrawn (the unwind).
    function cancelOffering() external {
        State s = _accrual.state;
        if (s != State.Subscription && s != State.Closed) revert StateIs(s, State.Closed);
        if (!hasRole(ISSUER_ROLE, msg.sender)) {
            uint256 deadline = uint256(_terms.subscriptionEnd) + DRAWDOWN_WINDOW;
            if (block.timestamp <= deadline) revert DrawdownDeadlineNotPassed(block.timestamp, deadline);
        }
        _accrual.state = State.Cancelled;
        emit OfferingCancelled();
    }

    /// @inheritdoc INoteTranche
    /// @dev Before drawdown only the refund is paid (the face comes later);
    ///      after a cancelled offering the whole request is refunded.
    function claimShares() external nonReentrant returns (uint256 shares, uint256 refunded) {
        Fill memory fill = _fills[msg.sender];
        State s = _accrual.state;
        if (s == State.Cancelled) {
            refunded = uint256(fill.shares) + fill.refund;
            delete _fills[msg.sender];
        } else if (s == State.Closed) {
            refunded = fill.refund;
            _fills[msg.sender].refund = 0;
        } else if (s >= State.Active && s != State.Cancelled) {
            shares = fill.shares;
            refunded = fill.refund;
            delete _fills[msg.sender];
        } else {
            revert StateIs(s, State.Active);
        }
        if (shares == 0 && refunded == 0) revert NothingToClaim(msg.sender);
        if (shares != 0) _releaseFromEscrow(msg.sender, shares);
        emit SharesClaimed(msg.sender, shares, refunded);
        if (refunded != 0) _asset.safeTransfer(msg.sender, refunded);
    }

    // ------------------------------------------------------------------
    // Servicing
    // ------------------------------------------------------------------

    /// @inheritdoc INoteTranche
    /// @dev Interest short of what is due is held, not allocated, until the
    ///      rest is paid. Principal is shared per face, rounded down; the
    ///      remainder stays as dust in the tranche, never paid out twice.
    function pay(uint256 interest, uint256 principal) external nonReentrant {
        _requireServicer();
        State s = _accrual.state;
        if (s != State.Active && s != State.Repaid) revert StateIs(s, State.Active);
        _accrue();
        uint256 due = _interestDue(uint256(_accrual.interestIndex) * _originalPrincipal);
        if (interest == type(uint256).max) interest = due; // "everything due", as of this block
        if (interest > due) revert InterestOverpaid(interest, due);
        Principal memory p = _principal;
        if (principal > p.outstanding) revert PrincipalOverpaid(principal, p.outstanding);

        if (interest != 0) _fund(interest, interest >= due); // interest <= due: covers all that is due
        if (principal != 0) {
            p.principalIndex += Math.mulDiv(principal, _INDEX_SCALE, totalSupply()).toUint128();
            p.outstanding -= uint128(principal);
            _principal = p;
            if (p.outstanding == 0) {
                _accrual.state = State.Repaid;
                emit Repaid();
            }
        }
        emit Paid(interest, principal, due - interest, p.outstanding);
        _asset.safeTransferFrom(msg.sender, address(this), interest + principal);
    }

    /// @inheritdoc INoteTranche
    function setRateStep(int16 stepBps) external {
        _requireServicer();
        if (stepBps > MAX_STEP_BPS || stepBps < -MAX_STEP_BPS) revert RateStepOutOfRange(stepBps);
        _accrue();
        _accrual.rateStepBps = stepBps;
        _updateRate();
    }

    /// @inheritdoc INoteTranche
    /// @dev Partial interest held (never allocated because the rest never
    ///      came) is shared per face among the holders of record through the
    ///      principal accumulator (rounded down), so `redeem` pays it; the
    ///      unpaid principal and interest are the lenders' loss.
    function writeOff() external nonReentrant {
        _requireServicer();
        State s = _accrual.state;
        if (s != State.Active && s != State.Repaid) revert StateIs(s, State.Active);
        _accrue();
        Principal memory p = _principal;
        uint256 held = _funding.held;
        uint256 interestLost = _interestDue(uint256(_accrual.interestIndex) * _originalPrincipal);
        if (held != 0) {
            p.principalIndex += Math.mulDiv(held, _INDEX_SCALE, totalSupply()).toUint128();
            _funding.held = 0;
            _cash.funded += uint128(held);
        }
        uint256 principalLost = p.outstanding;
        p.outstanding = 0;
        _principal = p;
        _accrual.state = State.WrittenOff;
        emit WrittenOff(principalLost, interestLost, held);
    }

    // ------------------------------------------------------------------
    // Emergency
    // ------------------------------------------------------------------

    /// @inheritdoc INoteTranche
    function pause() external onlyRole(GUARDIAN_ROLE) {
        _requireNotPaused();
        _accrual.paused = true;
        emit Paused(msg.sender);
    }

    /// @inheritdoc INoteTranche
    function unpause() external onlyRole(GUARDIAN_ROLE) {
        if (!_accrual.paused) revert ExpectedPause();
        _accrual.paused = false;
        emit Unpaused(msg.sender);
    }

    // ------------------------------------------------------------------
    // Holders
    // ------------------------------------------------------------------

    /// @inheritdoc INoteTranche
    /// @dev Pays the coupon accrued up to the funded index: everything the
    ///      servicer has paid for, nothing that is still only accrued.
    function claimCoupon() external nonReentrant returns (uint256 amount) {
        _accrue();
        _claimEscrowedFace(msg.sender);
        _settle(msg.sender);
        Owed storage owed = _owed[msg.sender];
        amount = owed.couponFunded;
        if (amount == 0) revert NothingToClaim(msg.sender);
        owed.couponFunded = 0;
        _cash.claimed += uint128(amount);
        emit CouponClaimed(msg.sender, amount, owed.couponPending);
        _asset.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc INoteTranche
    function redeem() external nonReentrant returns (uint256 amount) {
        _accrue();
        _claimEscrowedFace(msg.sender);
        _settle(msg.sender);
        amount = _principalOwed[msg.sender];
        State s = _accrual.state;
        // Enum state comparison (tainted only by sharing a slot with `lastAccrualAt`).
        // slither-disable-next-line incorrect-equality
        uint256 burned = (s == State.Repaid || s == State.WrittenOff) ? balanceOf(msg.sender) : 0;
        // slither-disable-next-line incorrect-equality
        if (amount == 0 && burned == 0) revert NothingToClaim(msg.sender);
        _principalOwed[msg.sender] = 0;
        if (burned != 0) _burn(msg.sender, burned);
        emit PrincipalRedeemed(msg.sender, amount, burned);
        if (amount != 0) _asset.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @notice The stablecoin this tranche is denominated in.
    function asset() external view returns (address) {
        return address(_asset);
    }

    /// @notice The note's servicer (the SPV account): receives capital, services the note.
    function spv() external view returns (address) {
        return _spv;
    }

    /// @notice The amortization schedule (cumulative share of original principal by date).
    function amortizationSchedule() external view returns (Amortization[] memory) {
        return _schedule;
    }

    /// @notice Coupon cash: allocated to holders, claimed, and held (partial, unallocated).
    function couponCash() external view returns (uint256 funded, uint256 claimed, uint256 held) {
        return (_cash.funded, _cash.claimed, _funding.held);
    }

    /// @notice The funded index and funding epoch (see `Funding`).
    function funding() external view returns (uint256 fundedIndex, uint256 epoch) {
        return (_funding.fundedIndex, _funding.epoch);
    }

    /// @notice Total coupon accrued to holders since drawdown (rounded up).
    function interestAccrued() public view returns (uint256) {
        (, uint256 accruedScaled) = _accruedNow();
        return Math.ceilDiv(accruedScaled, _INDEX_SCALE);
    }

    function decimals() public view override returns (uint8) {
        return _decimals;
    }

    function name() public view override returns (string memory) {
        return _name;
    }

    function symbol() public view override returns (string memory) {
        return _symbol;
    }

    /// @dev The admin handover delay is fixed (clones do not run the constructor).
    function defaultAdminDelay() public pure override returns (uint48) {
        return _ADMIN_TRANSFER_DELAY;
    }

    /// @inheritdoc INoteTranche
    function servicingState()
        external
        view
        returns (State state_, uint256 interestDue_, uint256 principalDue_, uint256 outstanding, uint256 rateBps)
    {
        (, uint256 accruedScaled) = _accruedNow();
        return (_accrual.state, _interestDue(accruedScaled), principalDue(), _principal.outstanding, _accrual.rateBps);
    }

    /// @inheritdoc INoteTranche
    function paused() external view returns (bool) {
        return _accrual.paused;
    }

    /// @inheritdoc INoteTranche
    function state() external view returns (State) {
        return _accrual.state;
    }

    /// @inheritdoc INoteTranche
    function terms() external view returns (Terms memory) {
        return _terms;
    }

    /// @inheritdoc INoteTranche
    function currentRateBps() external view returns (uint256) {
        return _accrual.rateBps;
    }

    /// @inheritdoc INoteTranche
    function rateStepBps() external view returns (int256) {
        return _accrual.rateStepBps;
    }

    /// @notice The reference rate in force.
    function referenceRateBps() external view returns (uint256) {
        return _accrual.referenceRateBps;
    }

    /// @inheritdoc INoteTranche
    function principalOutstanding() external view returns (uint256) {
        return _principal.outstanding;
    }

    /// @inheritdoc INoteTranche
    function originalPrincipal() external view returns (uint256) {
        return _originalPrincipal;
    }

    /// @inheritdoc INoteTranche
    function interestDue() external view returns (uint256) {
        (, uint256 accruedScaled) = _accruedNow();
        return _interestDue(accruedScaled);
    }

    /// @inheritdoc INoteTranche
    /// @dev Scheduled amounts round up (in the lenders' favour of being paid).
    function principalDue() public view returns (uint256) {
        uint256 outstanding = _principal.outstanding;
        if (outstanding == 0) return 0;
        if (block.timestamp >= _terms.maturity) return outstanding;
        uint256 original = _originalPrincipal;
        uint256 scheduled = Math.mulDiv(original, _cumulativeBpsAt(block.timestamp), _BPS, Math.Rounding.Ceil);
        uint256 repaid = original - outstanding;
        return scheduled > repaid ? Math.min(scheduled - repaid, outstanding) : 0;
    }

    /// @inheritdoc INoteTranche
    /// @dev Accrued and unclaimed, funded or not.
    function couponOwed(address holder) public view returns (uint256) {
        (uint256 interestIndex,) = _accruedNow();
        (uint256 funded, uint256 pending) = _couponOf(holder, interestIndex);
        return funded + pending;
    }

    /// @inheritdoc INoteTranche
    function couponClaimable(address holder) external view returns (uint256) {
        (uint256 funded,) = _couponOf(holder, _accrual.interestIndex);
        return funded;
    }

    /// @inheritdoc INoteTranche
    function principalClaimable(address holder) public view returns (uint256) {
        uint256 owed = _principalOwed[holder] + _principalEarned(holder, balanceOf(holder));
        if (holder == address(this)) return owed;
        uint256 shares = _unclaimedShares(holder);
        if (shares == 0) return owed;
        return owed + Math.mulDiv(principalClaimable(address(this)), shares, balanceOf(address(this)));
    }

    /// @inheritdoc INoteTranche
    function principalOutstandingOf(address holder) external view returns (uint256) {
        uint256 supply = totalSupply();
        if (supply == 0) return 0;
        uint256 face = balanceOf(holder) + _unclaimedShares(holder);
        return Math.mulDiv(face, _principal.outstanding, supply);
    }

    /// @inheritdoc INoteTranche
    function pendingDepositRequest(uint256, address controller) external view returns (uint256) {
        return _pending[controller];
    }

    /// @inheritdoc INoteTranche
    /// @dev The face the controller can claim (0 before drawdown).
    function claimableDepositRequest(uint256, address controller) external view returns (uint256) {
        return _unclaimedShares(controller);
    }

    /// @notice The controller's fill and refund once fulfilled.
    function fillOf(address controller) external view returns (uint256 shares, uint256 refund) {
        Fill memory fill = _fills[controller];
        return (fill.shares, fill.refund);
    }

    /// @notice Subscription totals: pending (unfulfilled), requested at close, filled.
    function subscriptionTotals() external view returns (uint256 pending, uint256 requested, uint256 filled) {
        return (_totalPending, _totalRequested, _totalFilled);
    }

    /// @inheritdoc INoteTranche
    function canTransfer(address from, address to, uint256 amount) external view returns (bool) {
        return !_accrual.paused && to != address(this) && _identities.isVerified(from)
            && _identities.isVerified(to) && balanceOf(from) >= amount;
    }

    /// @inheritdoc INoteTranche
    function isRepaid() external view returns (bool) {
        // slither-disable-next-line incorrect-equality
        return _accrual.state == State.Repaid;
    }

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    /// @dev Every balance change (mint, transfer, burn) settles both sides
    ///      at the current indexes first. Holders must be whitelisted; the
    ///      escrow is only ever filled by the drawdown mint. While paused only
    ///      transfers between holders stop: releases from escrow
    ///      (`claimShares`) and burns (`redeem`) go on.
    function _update(address from, address to, uint256 value) internal override {
        _accrue();
        if (from != address(0) && to != address(0) && from != address(this)) _requireNotPaused();
        if (from != address(0)) _settle(from);
        if (to != address(0)) _settle(to);
        if (to == address(this) && from != address(0)) revert TransferToEscrow();
        if (from == address(this)) _identities.requireNotFrozen(to); // a claim of what `to` is owed
        else if (to != address(0) && to != address(this)) _identities.requireVerified(to);
        if (from != address(0) && from != address(this) && to != address(0)) _identities.requireVerified(from);
        super._update(from, to, value);
    }

    /// @dev Brings the coupon index up to now at the current rate, on the
    ///      outstanding principal; the per-face increase rounds down.
    function _accrue() private {
        Accrual memory a = _accrual;
        if (a.lastAccrualAt >= block.timestamp || a.state != State.Active) return;
        a.interestIndex += _indexIncrease(a).toUint128();
        a.lastAccrualAt = uint40(block.timestamp);
        _accrual = a;
    }

    /// @dev Index increase since the last accrual, per face, rounded down.
    function _indexIncrease(Accrual memory a) private view returns (uint256) {
        uint256 supply = _originalPrincipal; // == totalSupply() while accruing
        if (supply == 0) return 0; // a zero outstanding or rate gives 0 below
        uint256 outstanding = _principal.outstanding;
        uint256 elapsed = block.timestamp - a.lastAccrualAt;
        return Math.mulDiv(outstanding * a.rateBps * elapsed, _INDEX_SCALE, _BPS * _YEAR * supply);
    }

    /// @dev (interest index, accrued total scaled) as if accrued now.
    function _accruedNow() private view returns (uint256 interestIndex, uint256 accruedScaled) {
        Accrual memory a = _accrual;
        interestIndex = a.interestIndex;
        // slither-disable-next-line incorrect-equality
        if (a.state == State.Active && a.lastAccrualAt < block.timestamp) interestIndex += _indexIncrease(a);
        accruedScaled = interestIndex * _originalPrincipal;
    }

    /// @dev Credits `account` with what its balance earned since its
    ///      checkpoint: coupon below the funded index is claimable, coupon
    ///      above it pending; pending coupon of an earlier funding epoch has
    ///      been paid for since (funding always catches up fully).
    function _settle(address account) private {
        Checkpoint memory c = _checkpoints[account];
        uint128 interestIndex = _accrual.interestIndex;
        uint96 principalIndex = uint96(_principal.principalIndex);
        Funding memory f = _funding;
        // slither-disable-next-line incorrect-equality
        if (c.interestIndex == interestIndex && c.principalIndex == principalIndex && c.epoch == f.epoch) return;
        Owed memory owed = _owed[account];
        (uint256 funded, uint256 pending) = _split(owed, c, f, balanceOf(account), interestIndex);
        if (funded != owed.couponFunded || pending != owed.couponPending) {
            _owed[account] = Owed(funded.toUint128(), pending.toUint128());
        }
        uint256 principal = _principalEarned(account, balanceOf(account));
        if (principal != 0) _principalOwed[account] += principal;
        _checkpoints[account] = Checkpoint(interestIndex, principalIndex, f.epoch);
    }

    /// @dev (claimable, pending) coupon of `owed` plus what `balance` earned
    ///      from `c.interestIndex` to `interestIndex`, rounded down.
    function _split(Owed memory owed, Checkpoint memory c, Funding memory f, uint256 balance, uint256 interestIndex)
        private
        pure
        returns (uint256 funded, uint256 pending)
    {
        funded = owed.couponFunded;
        pending = owed.couponPending;
        if (c.epoch != f.epoch) {
            funded += pending;
            pending = 0;
        }
        // slither-disable-next-line incorrect-equality
        if (balance == 0 || interestIndex == c.interestIndex) return (funded, pending);
        uint256 from = c.interestIndex;
        if (from < f.fundedIndex) {
            uint256 to = Math.min(interestIndex, f.fundedIndex);
            funded += Math.mulDiv(balance, to - from, _INDEX_SCALE);
            from = to;
        }
        if (interestIndex > from) pending += Math.mulDiv(balance, interestIndex - from, _INDEX_SCALE);
    }

    function _principalEarned(address account, uint256 balance) private view returns (uint256) {
        if (balance == 0) return 0;
        return Math.mulDiv(balance, _principal.principalIndex - _checkpoints[account].principalIndex, _INDEX_SCALE);
    }

    /// @dev (claimable, pending) coupon of `holder` at `interestIndex`,
    ///      including the share of the escrow its unclaimed face carries.
    function _couponOf(address holder, uint256 interestIndex) private view returns (uint256, uint256) {
        Funding memory f = _funding;
        (uint256 funded, uint256 pending) =
            _split(_owed[holder], _checkpoints[holder], f, balanceOf(holder), interestIndex);
        uint256 shares = holder == address(this) ? 0 : _unclaimedShares(holder);
        if (shares != 0) {
            (uint256 escrowFunded, uint256 escrowPending) = _couponOf(address(this), interestIndex);
            uint256 escrowBalance = balanceOf(address(this));
            funded += Math.mulDiv(escrowFunded, shares, escrowBalance);
            pending += Math.mulDiv(escrowPending, shares, escrowBalance);
        }
        return (funded, pending);
    }

    /// @dev Adds `amount` to the held interest; when it covers everything
    ///      due, allocates it: the funded index catches up with accrual.
    function _fund(uint256 amount, bool coversDue) private {
        Funding memory f = _funding;
        uint256 held = uint256(f.held) + amount;
        if (coversDue) {
            _cash.funded += held.toUint128();
            f.fundedIndex = _accrual.interestIndex;
            f.epoch += 1;
            f.held = 0;
        } else {
            f.held = held.toUint96();
        }
        _funding = f;
    }

    /// @dev A holder claiming coupon or principal first takes the face still
    ///      in escrow for it (the refund stays for `claimShares`).
    function _claimEscrowedFace(address holder) private {
        uint256 shares = _unclaimedShares(holder);
        if (shares == 0) return;
        _fills[holder].shares = 0;
        _releaseFromEscrow(holder, shares);
        emit EscrowedFaceClaimed(holder, shares);
    }

    /// @dev Moves `shares` of face from escrow to `controller` together with
    ///      the matching part of what the escrow has earned (rounded down;
    ///      the last claimer takes the remainder).
    function _releaseFromEscrow(address controller, uint256 shares) private {
        _accrue();
        _settle(address(this));
        _settle(controller);
        Owed memory escrow = _owed[address(this)];
        uint256 escrowBalance = balanceOf(address(this));
        uint256 funded = Math.mulDiv(escrow.couponFunded, shares, escrowBalance);
        uint256 pending = Math.mulDiv(escrow.couponPending, shares, escrowBalance);
        uint256 principal = Math.mulDiv(_principalOwed[address(this)], shares, escrowBalance);
        _owed[address(this)] = Owed(escrow.couponFunded - uint128(funded), escrow.couponPending - uint128(pending));
        _principalOwed[address(this)] -= principal;
        _transfer(address(this), controller, shares);
        Owed storage owed = _owed[controller];
        owed.couponFunded += uint128(funded);
        owed.couponPending += uint128(pending);
        _principalOwed[controller] += principal;
    }

    function _unclaimedShares(address controller) private view returns (uint256) {
        State s = _accrual.state;
        return (s >= State.Active && s != State.Cancelled) ? _fills[controller].shares : 0;
    }

    /// @dev Accrued (rounded up) minus allocated and held interest.
    function _interestDue(uint256 accruedScaled) private view returns (uint256) {
        uint256 accrued = Math.ceilDiv(accruedScaled, _INDEX_SCALE);
        uint256 paid = uint256(_cash.funded) + _funding.held;
        return accrued > paid ? accrued - paid : 0;
    }

    function _updateRate() private {
        Accrual storage a = _accrual;
        uint256 oldRate = a.rateBps;
        uint256 newRate = _clampedRate(a.referenceRateBps, a.rateStepBps);
        a.rateBps = uint16(newRate);
        emit RateChanged(oldRate, newRate, a.referenceRateBps, _terms.spreadBps, a.rateStepBps);
    }

    function _clampedRate(uint256 referenceRate, int256 stepBps) private view returns (uint256) {
        int256 raw = int256(referenceRate + _terms.spreadBps) + stepBps;
        uint256 floorRate = _terms.floorRateBps;
        uint256 capRate = _terms.capRateBps;
        if (raw < int256(floorRate)) return floorRate;
        if (raw > int256(capRate)) return capRate;
        return uint256(raw);
    }

    /// @dev Cumulative scheduled share at `ts`: binary search for the last
    ///      entry due at or before `ts`.
    function _cumulativeBpsAt(uint256 ts) private view returns (uint256) {
        uint256 low = 0;
        uint256 high = _schedule.length;
        while (low < high) {
            uint256 mid = Math.average(low, high);
            if (_schedule[mid].dueAt <= ts) low = mid + 1;
            else high = mid;
        }
        return low == 0 ? 0 : _schedule[low - 1].cumulativeBps;
    }

    function _requireServicer() private view {
        if (msg.sender != _spv) revert NotServicer(msg.sender);
    }

    /// @dev Cumulative share of the original principal due by each date.
    function _setSchedule(uint40[] calldata dueAt, uint16[] calldata cumulativeBps) private {
        if (dueAt.length != cumulativeBps.length) revert ScheduleInvalid(dueAt.length);
        uint256 previousDue = 0;
        uint256 previousBps = 0;
        for (uint256 i = 0; i < dueAt.length; ++i) {
            if (
                dueAt[i] <= previousDue || dueAt[i] > _terms.maturity || cumulativeBps[i] < previousBps
                    || cumulativeBps[i] > _BPS
            ) revert ScheduleInvalid(i);
            _schedule.push(Amortization(dueAt[i], cumulativeBps[i]));
            previousDue = dueAt[i];
            previousBps = cumulativeBps[i];
        }
        emit AmortizationScheduleSet(dueAt, cumulativeBps);
    }

    function _requireNotPaused() private view {
        if (_accrual.paused) revert EnforcedPause();
    }

    function _requireState(State expected) private view {
        State s = _accrual.state;
        if (s != expected) revert StateIs(s, expected);
    }

    function _validateTerms(Terms memory t) private view {
        if (t.maxSize == 0) revert TermsInvalid("maxSize is zero");
        if (t.subscriptionEnd <= t.subscriptionStart) revert TermsInvalid("subscription window empty");
        if (t.subscriptionEnd < block.timestamp) revert TermsInvalid("subscription window in the past");
        if (t.maturity <= t.subscriptionEnd) revert TermsInvalid("maturity before subscription end");
        if (t.floorRateBps > t.capRateBps) revert TermsInvalid("floor above cap");
        if (t.minCollateralRatioBps == 0) revert TermsInvalid("minCollateralRatioBps is zero");
    }
}
