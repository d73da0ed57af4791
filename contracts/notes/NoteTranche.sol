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
///         `principalIndex` (principal repaid per face). Each holder is one
///         storage slot, `Position`: its face and the two indexes it was
///         last settled at, so a transfer or a claim touches O(1) slots
///         whatever happened before. Coupon it earned is credited to a side
///         slot (`_owed`) that is allocated once (at `fulfil` for a lender)
///         and never returns to zero, and read only when the position's
///         flags say it holds coupon; principal is carried by moving the
///         principal checkpoint (`_rebase`), and credited to `_principalOwed`
///         only when a sender empties its position after a repayment. Each
///         balance change settles both parties first, so entitlements never
///         move with the tokens.
///
///         Filled face is a position from `fulfil` on, flagged as still in
///         escrow: it earns from the drawdown (both indexes 0) like any
///         other face, and claiming it only clears the flag (the token
///         balance of this contract, the escrow, is the total still flagged).
///         `DEFAULT_ADMIN_ROLE` (the issuer at deployment) moves in two steps
///         with a delay (OpenZeppelin AccessControlDefaultAdminRules).
contract NoteTranche is INoteTranche, ERC20, AccessControlDefaultAdminRules, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;

    bytes32 public constant ISSUER_ROLE = keccak256("ISSUER_ROLE");
    /// @notice May pause and unpause subscriptions, drawdown and transfers.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");

    /// @inheritdoc INoteTranche
    uint256 public constant DRAWDOWN_WINDOW = 30 days;

    /// @notice Largest coupon step the covenant engine may set, either way.
    int256 public constant MAX_STEP_BPS = 2_000;

    /// @dev Coupon per face, scaled. A position keeps its checkpoint in 96
    ///      bits: with the cap at most 100 % a year that lasts 79 years.
    uint256 private constant _INDEX_SCALE = 1e27;
    /// @dev Principal per face, scaled; a position keeps it in 56 bits (7.2
    ///      times the face: principal plus the held interest of a write-off).
    ///      Each repayment's index increase rounds down: holders lose less
    ///      than supply / 1e16 units per repayment together (dust).
    uint256 private constant _PRINCIPAL_SCALE = 1e16;
    uint256 private constant _BPS = 10_000;
    uint256 private constant _YEAR = 365 days;
    /// @dev Initial wait between starting and accepting a transfer of `DEFAULT_ADMIN_ROLE`.
    uint48 private constant _ADMIN_TRANSFER_DELAY = 2 days;

    /// @dev `Position.flags`: the face is still in escrow (filled, not claimed).
    uint8 private constant _ESCROWED = 1;
    /// @dev `Position.flags`: the holder's `_owed` slot holds pending coupon.
    uint8 private constant _PENDING = 4;
    /// @dev `Position.flags`: the holder's `_owed` slot holds claimable coupon.
    uint8 private constant _FUNDED = 8;

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

    /// @dev Hot accrual state, one slot: what an accrual reads and writes
    ///      besides `Indexes.original`. The pause flag lives here because
    ///      every transfer reads this slot anyway. The index fits 96 bits for
    ///      79 years at the largest cap (100 %); `lastAccrualAt` until 2106.
    struct Accrual {
        uint96 interestIndex; // coupon accrued per face, scaled 1e27
        uint32 lastAccrualAt;
        uint16 rateBps; // current rate, clamped to [floor, cap]
        State state;
        bool paused; // guardian pause: subscriptions, drawdown, transfers
        uint96 outstanding; // principal outstanding
    }

    /// @dev The coupon's inputs besides the terms; read only when the rate changes.
    struct Rates {
        uint16 referenceRateBps;
        int16 rateStepBps;
    }

    /// @dev What every settlement reads, one slot. Interest is allocated to
    ///      holders only when everything due is covered: `fundedIndex` then
    ///      jumps to the current index. Coupon a holder accrued up to its
    ///      checkpoint is therefore all paid for once `fundedIndex` reaches
    ///      the checkpoint (funding always catches up fully). Total face
    ///      only changes while nothing accrues (the drawdown mint, burns
    ///      after full repayment), so the exact total of holders' coupon
    ///      entitlements, scaled 1e27, is `interestIndex x original`.
    struct Indexes {
        uint96 fundedIndex; // every coupon accrued up to this index is paid for
        int56 principalIndex; // principal repaid per face, scaled 1e16 (< 3.6e16)
        uint96 original; // face minted at drawdown
    }

    /// @dev Coupon cash paid in, one slot. Partial payments wait in `held`
    ///      until the rest arrives, so holders are paid pari passu.
    struct CashIn {
        uint128 funded; // interest allocated to holders, ever
        uint96 held; // partial interest paid in, not yet allocated
    }

    /// @dev What a claim writes besides the holder, one slot.
    struct Totals {
        uint96 escrowed; // face still in escrow: this contract's balance
        uint160 couponClaimed; // coupons paid out, ever
    }

    /// @dev One holder, one slot: face and the indexes it was settled at.
    struct Position {
        uint96 balance; // face, including face still in escrow (`_ESCROWED`)
        uint96 interestIndex; // coupon index at the last settlement
        int56 principalIndex; // principal checkpoint: the face earns principal index minus this
        uint8 flags; // `_ESCROWED`, `_PENDING`, `_FUNDED`
    }

    /// @dev Once written, never zero again (`allocated`): a later credit
    ///      rewrites a live slot (2,900 gas) instead of a fresh one (20,000).
    struct Owed {
        uint128 couponFunded; // claimable
        uint120 couponPending; // accrued up to the checkpoint, above the funded index then
        bool allocated;
    }

    struct Amortization {
        uint40 dueAt;
        uint16 cumulativeBps;
    }

    Accrual private _accrual;
    Rates private _rates;
    Indexes private _indexes;
    CashIn private _cash;
    Totals private _totals;
    uint256 private _supply;

    mapping(address => Position) private _positions;
    mapping(address => Owed) private _owed;
    mapping(address => uint256) private _principalOwed;

    mapping(address => uint256) private _pending;
    mapping(address => uint256) private _refunds;
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
        _rates.referenceRateBps = terms_.referenceRateBps;
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
        _requireVerified(controller);

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
    ///      The fill becomes the controller's position, flagged as still in
    ///      escrow; no face exists before drawdown, so the slot is empty.
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
            if (filled != 0) {
                // the coupon slot is allocated now, paid by the issuer's batch: the
                // holder's first credit later rewrites it (2,900 gas, not 20,000)
                _positions[controller] = Position(filled.toUint96(), 0, 0, _ESCROWED);
                _owed[controller] = Owed(0, 0, true);
            }
            if (refund != 0) _refunds[controller] = refund;
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
        _accrual.lastAccrualAt = uint32(block.timestamp);
        _accrual.outstanding = principal.toUint96();
        _indexes.original = uint96(principal);
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
        Position memory p = _position(msg.sender);
        uint256 escrowed = p.flags & _ESCROWED != 0 ? p.balance : 0;
        refunded = _refunds[msg.sender];
        State s = _accrual.state;
        if (s == State.Cancelled) {
            refunded += escrowed;
            if (escrowed != 0) delete _positions[msg.sender];
        } else if (s >= State.Active) {
            shares = escrowed;
        } else if (s != State.Closed) {
            revert StateIs(s, State.Active);
        }
        if (shares == 0 && refunded == 0) revert NothingToClaim(msg.sender);
        if (refunded != 0) _refunds[msg.sender] = 0;
        if (shares != 0) {
            _release(msg.sender, p);
            _store(msg.sender, p);
        }
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
        uint256 index = _accrue();
        uint256 outstanding = _accrual.outstanding;
        Indexes memory ix = _indexes;
        CashIn memory cash = _cash;
        uint256 due = _interestDue(index * ix.original, cash);
        if (interest == type(uint256).max) interest = due; // "everything due", as of this block
        if (interest > due) revert InterestOverpaid(interest, due);
        if (principal > outstanding) revert PrincipalOverpaid(principal, outstanding);

        if (interest != 0) {
            uint256 held = uint256(cash.held) + interest;
            if (interest >= due) {
                // interest <= due: it covers all that is due, so the funded index catches up
                cash.funded += held.toUint128();
                cash.held = 0;
                ix.fundedIndex = uint96(index);
            } else {
                cash.held = held.toUint96();
            }
            _cash = cash;
        }
        if (principal != 0) {
            ix.principalIndex = (ix.principalIndex + int256(Math.mulDiv(principal, _PRINCIPAL_SCALE, _supply))).toInt56();
            outstanding -= principal;
            _accrual.outstanding = uint96(outstanding);
            if (outstanding == 0) {
                _accrual.state = State.Repaid;
                emit Repaid();
            }
        }
        if (interest != 0 || principal != 0) _indexes = ix;
        emit Paid(interest, principal, due - interest, outstanding);
        _asset.safeTransferFrom(msg.sender, address(this), interest + principal);
    }

    /// @inheritdoc INoteTranche
    function setRateStep(int16 stepBps) external {
        _requireServicer();
        if (stepBps > MAX_STEP_BPS || stepBps < -MAX_STEP_BPS) revert RateStepOutOfRange(stepBps);
        _accrue();
        _rates.rateStepBps = stepBps;
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
        uint256 index = _accrue();
        CashIn memory cash = _cash;
        uint256 held = cash.held;
        uint256 interestLost = _interestDue(index * _indexes.original, cash);
        if (held != 0) {
            _indexes.principalIndex =
                (_indexes.principalIndex + int256(Math.mulDiv(held, _PRINCIPAL_SCALE, _supply))).toInt56();
            _cash = CashIn(cash.funded + uint128(held), 0);
        }
        uint256 principalLost = _accrual.outstanding;
        (_accrual.outstanding, _accrual.state) = (0, State.WrittenOff);
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
    ///      servicer has paid for, nothing that is still only accrued. The
    ///      holder's balance does not change, so its checkpoint moves to the
    ///      funded index only: what it accrued above stays implicit in the
    ///      gap to the interest index (no accrual, no pending written).
    function claimCoupon() external nonReentrant returns (uint256 amount) {
        Position memory p = _position(msg.sender);
        _claimEscrowedFace(msg.sender, p);
        uint256 fundedIndex = _indexes.fundedIndex;
        Owed memory owed = _owedOf(msg.sender, p);
        amount = owed.couponFunded;
        uint256 pending = owed.couponPending;
        if (p.interestIndex <= fundedIndex) {
            // all accrued up to the checkpoint is paid for, and the face earned the rest up to the funded index
            (uint256 earned,) = _earned(p.balance, p.interestIndex, fundedIndex, fundedIndex);
            amount += pending + earned;
            pending = 0;
            p.interestIndex = uint96(fundedIndex);
        }
        if (amount == 0) revert NothingToClaim(msg.sender);
        if (p.flags & (_PENDING | _FUNDED) != 0) {
            _owed[msg.sender] = Owed(0, uint120(pending), true);
            p.flags &= pending == 0 ? ~(_PENDING | _FUNDED) : ~_FUNDED;
        }
        _store(msg.sender, p);
        _totals.couponClaimed += uint160(amount);
        (uint256 index,) = _accruedNow();
        (, uint256 accrued) = _earned(p.balance, p.interestIndex, index, 0); // above the funded index
        pending += accrued;
        emit CouponClaimed(msg.sender, amount, pending);
        _asset.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc INoteTranche
    function redeem() external nonReentrant returns (uint256 amount) {
        Position memory p = _position(msg.sender);
        _claimEscrowedFace(msg.sender, p);
        Indexes memory ix = _indexes;
        _settle(msg.sender, p, _accrue(), ix);
        amount = _principalOwed[msg.sender] + _principalEarned(p, ix.principalIndex);
        p.principalIndex = ix.principalIndex;
        State s = _accrual.state;
        // Enum state comparison (tainted only by sharing a slot with `lastAccrualAt`).
        // slither-disable-next-line incorrect-equality
        uint256 burned = (s == State.Repaid || s == State.WrittenOff) ? p.balance : 0; // escrow released above
        // slither-disable-next-line incorrect-equality
        if (amount == 0 && burned == 0) revert NothingToClaim(msg.sender);
        if (_principalOwed[msg.sender] != 0) _principalOwed[msg.sender] = 0;
        if (burned != 0) {
            p.balance = 0;
            _supply -= burned;
            emit Transfer(msg.sender, address(0), burned);
        }
        _store(msg.sender, p);
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
        return (_cash.funded, _totals.couponClaimed, _cash.held);
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

    /// @dev Face out of escrow; the escrow's balance is the face still in it.
    function balanceOf(address account) public view override returns (uint256) {
        if (account == address(this)) return _totals.escrowed;
        Position memory p = _position(account);
        return p.flags & _ESCROWED != 0 ? 0 : p.balance;
    }

    function totalSupply() public view override returns (uint256) {
        return _supply;
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
        return (_accrual.state, _interestDue(accruedScaled, _cash), principalDue(), _accrual.outstanding, _accrual.rateBps);
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
        return _rates.rateStepBps;
    }

    /// @notice The reference rate in force.
    function referenceRateBps() external view returns (uint256) {
        return _rates.referenceRateBps;
    }

    /// @inheritdoc INoteTranche
    function principalOutstanding() external view returns (uint256) {
        return _accrual.outstanding;
    }

    /// @inheritdoc INoteTranche
    function originalPrincipal() external view returns (uint256) {
        return _indexes.original;
    }

    /// @inheritdoc INoteTranche
    function interestDue() external view returns (uint256) {
        (, uint256 accruedScaled) = _accruedNow();
        return _interestDue(accruedScaled, _cash);
    }

    /// @inheritdoc INoteTranche
    /// @dev Scheduled amounts round up (in the lenders' favour of being paid).
    function principalDue() public view returns (uint256) {
        uint256 outstanding = _accrual.outstanding;
        if (outstanding == 0) return 0;
        if (block.timestamp >= _terms.maturity) return outstanding;
        uint256 original = _indexes.original;
        uint256 scheduled = Math.mulDiv(original, _cumulativeBpsAt(block.timestamp), _BPS, Math.Rounding.Ceil);
        uint256 repaid = original - outstanding;
        return scheduled > repaid ? Math.min(scheduled - repaid, outstanding) : 0;
    }

    /// @inheritdoc INoteTranche
    /// @dev Accrued and unclaimed, funded or not (face in escrow included).
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
        Position memory p = _position(holder);
        if (!_earns(p)) return 0;
        return _principalOwed[holder] + _principalEarned(p, _indexes.principalIndex);
    }

    /// @inheritdoc INoteTranche
    function principalOutstandingOf(address holder) external view returns (uint256) {
        uint256 supply = _supply;
        if (supply == 0) return 0; // the escrow has no position: 0 too
        Position memory p = _position(holder);
        if (!_earns(p)) return 0;
        return Math.mulDiv(p.balance, _accrual.outstanding, supply);
    }

    /// @inheritdoc INoteTranche
    function pendingDepositRequest(uint256, address controller) external view returns (uint256) {
        return _pending[controller];
    }

    /// @inheritdoc INoteTranche
    /// @dev The face the controller can claim (0 before drawdown).
    function claimableDepositRequest(uint256, address controller) external view returns (uint256) {
        Position memory p = _position(controller);
        return p.flags & _ESCROWED != 0 && _faceIssued() ? p.balance : 0;
    }

    /// @notice The controller's fill still in escrow and its refund not yet claimed.
    function fillOf(address controller) external view returns (uint256 shares, uint256 refund) {
        Position memory p = _position(controller);
        return (p.flags & _ESCROWED != 0 ? p.balance : 0, _refunds[controller]);
    }

    /// @inheritdoc INoteTranche
    function canTransfer(address from, address to, uint256 amount) external view returns (bool) {
        return !_accrual.paused && to != address(this) && _isVerified(from) && _isVerified(to)
            && balanceOf(from) >= amount;
    }

    /// @inheritdoc INoteTranche
    function isRepaid() external view returns (bool) {
        // slither-disable-next-line incorrect-equality
        return _accrual.state == State.Repaid;
    }

    // ------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------

    /// @dev The only mint is the drawdown's, into the escrow; burns are
    ///      `redeem`'s and releases from escrow `_release`'s, both without
    ///      this hook. A transfer between holders settles both sides at the
    ///      current indexes first and writes each position once. Holders
    ///      must be whitelisted and the tranche not paused. A recipient whose
    ///      face is still in escrow takes it out first (it must be verified
    ///      to receive anyway), so a position never mixes the two.
    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0)) {
            _supply += value;
            _totals.escrowed += value.toUint96();
            emit Transfer(address(0), to, value);
            return;
        }
        uint256 index = _accrue();
        _requireNotPaused();
        if (to == address(this)) revert TransferToEscrow();
        _requireVerified(to);
        _requireVerified(from);
        Indexes memory ix = _indexes;
        Position memory src = _position(from);
        uint256 fromBalance = src.flags & _ESCROWED != 0 ? 0 : src.balance;
        if (fromBalance < value) revert ERC20InsufficientBalance(from, fromBalance, value);
        _settle(from, src, index, ix);
        _rebase(from, src, src.balance - value, ix.principalIndex);
        src.balance -= uint96(value);
        _store(from, src);
        Position memory dst = _position(to); // after the write: `from == to` sees its own
        _claimEscrowedFace(to, dst);
        _settle(to, dst, index, ix);
        uint256 toBalance = dst.balance + value;
        _rebase(to, dst, toBalance, ix.principalIndex);
        dst.balance = toBalance.toUint96();
        _store(to, dst);
        emit Transfer(from, to, value);
    }

    /// @dev One copy of the packing code for every read and write of a position.
    function _position(address account) private view returns (Position memory) {
        return _positions[account];
    }

    function _store(address account, Position memory p) private {
        _positions[account] = p;
    }

    /// @dev A holder claiming coupon or principal, or receiving face, first
    ///      takes its face still in escrow (the refund stays for `claimShares`).
    function _claimEscrowedFace(address holder, Position memory p) private {
        if (p.flags & _ESCROWED == 0 || !_faceIssued()) return;
        _release(holder, p);
        emit EscrowedFaceClaimed(holder, p.balance);
    }

    /// @dev Takes `holder`'s face out of escrow: clears the flag of `p` (the
    ///      caller writes it back). What the face earned in escrow is
    ///      already the position's: it was settled from the drawdown on.
    function _release(address holder, Position memory p) private {
        _identities.requireNotFrozen(holder); // a claim of what `holder` is owed
        p.flags &= ~_ESCROWED;
        _totals.escrowed -= p.balance;
        emit Transfer(address(this), holder, p.balance);
    }

    /// @dev Brings the coupon index up to now at the current rate, on the
    ///      outstanding principal; the per-face increase rounds down.
    ///      Returns the index.
    function _accrue() private returns (uint256) {
        Accrual memory a = _accrual;
        if (a.lastAccrualAt >= block.timestamp || a.state != State.Active) return a.interestIndex;
        a.interestIndex = (a.interestIndex + _indexIncrease(a)).toUint96();
        a.lastAccrualAt = uint32(block.timestamp);
        _accrual = a;
        return a.interestIndex;
    }

    /// @dev Index increase since the last accrual, per face, rounded down.
    function _indexIncrease(Accrual memory a) private view returns (uint256) {
        uint256 original = _indexes.original;
        if (original == 0) return 0; // a zero outstanding or rate gives 0 below
        uint256 elapsed = block.timestamp - a.lastAccrualAt;
        return Math.mulDiv(uint256(a.outstanding) * a.rateBps * elapsed, _INDEX_SCALE, _BPS * _YEAR * original);
    }

    /// @dev (interest index, accrued total scaled) as if accrued now.
    function _accruedNow() private view returns (uint256 interestIndex, uint256 accruedScaled) {
        Accrual memory a = _accrual;
        interestIndex = a.interestIndex;
        // slither-disable-next-line incorrect-equality
        if (a.state == State.Active && a.lastAccrualAt < block.timestamp) interestIndex += _indexIncrease(a);
        accruedScaled = interestIndex * _indexes.original;
    }

    /// @dev Credits `account` (position `p`, written back by the caller)
    ///      with the coupon its face earned since its checkpoint and moves the
    ///      checkpoint to `index` (principal: `_rebase`). Coupon below the funded
    ///      index is claimable, above it pending; pending coupon accrued up to
    ///      a checkpoint at or below the funded index has been paid for since.
    ///      The side slots are read and written only if something changes.
    function _settle(address account, Position memory p, uint256 index, Indexes memory ix) private {
        uint256 balance = p.balance;
        if (p.interestIndex != index) {
            (uint256 funded, uint256 pending) = _earned(balance, p.interestIndex, index, ix.fundedIndex);
            bool paidFor = p.interestIndex <= ix.fundedIndex;
            if (funded != 0 || pending != 0 || (paidFor && p.flags & _PENDING != 0)) {
                Owed memory owed = _owedOf(account, p);
                if (paidFor) {
                    funded += owed.couponPending;
                } else {
                    pending += owed.couponPending;
                }
                funded += owed.couponFunded;
                _owed[account] = Owed(funded.toUint128(), pending.toUint120(), true);
                p.flags = (p.flags | _FUNDED | _PENDING) & ~(funded == 0 ? _FUNDED : 0) & ~(pending == 0 ? _PENDING : 0);
            }
            p.interestIndex = index.toUint96();
        }
    }

    /// @dev Before `p`'s face becomes `newBalance`: moves its principal
    ///      checkpoint so that the new face earns, from the current index, what
    ///      the old face had earned (`principalIndex - checkpoint` rounded
    ///      down, so never more). The checkpoint may go below zero; when it
    ///      would leave int56 (most of the face leaves) or no face is left,
    ///      what was earned is credited to `_principalOwed` instead (rounded
    ///      down). So a transfer writes principal to a side slot only when
    ///      the sender empties its position after a repayment.
    function _rebase(address account, Position memory p, uint256 newBalance, int256 principalIndex) private {
        int256 checkpoint = p.principalIndex;
        // slither-disable-next-line incorrect-equality
        if (checkpoint == principalIndex) return;
        uint256 earned = uint256(p.balance) * uint256(principalIndex - checkpoint); // scaled 1e16
        if (newBalance != 0) {
            int256 moved = principalIndex - int256(earned / newBalance);
            if (moved >= type(int56).min) {
                p.principalIndex = int56(moved);
                return;
            }
        }
        uint256 principal = earned / _PRINCIPAL_SCALE;
        if (principal != 0) _principalOwed[account] += principal;
        p.principalIndex = int56(principalIndex);
    }

    /// @dev Principal `p`'s face earned since its checkpoint, rounded down.
    function _principalEarned(Position memory p, int256 principalIndex) private pure returns (uint256) {
        return uint256(p.balance) * uint256(principalIndex - p.principalIndex) / _PRINCIPAL_SCALE;
    }

    /// @dev (claimable, pending) coupon `balance` earned from index `from` to
    ///      `to`, split at the funded index, each rounded down.
    function _earned(uint256 balance, uint256 from, uint256 to, uint256 fundedIndex)
        private
        pure
        returns (uint256 funded, uint256 pending)
    {
        // slither-disable-next-line incorrect-equality
        if (balance == 0 || to <= from) return (0, 0);
        if (from < fundedIndex) {
            uint256 end = Math.min(to, fundedIndex);
            funded = balance * (end - from) / _INDEX_SCALE; // < 2^96 x 2^96: no overflow
            from = end;
        }
        if (to > from) pending = balance * (to - from) / _INDEX_SCALE;
    }

    /// @dev (claimable, pending) coupon of `holder` at `interestIndex`,
    ///      face in escrow included once the face is issued.
    function _couponOf(address holder, uint256 interestIndex) private view returns (uint256 funded, uint256 pending) {
        Position memory p = _position(holder);
        if (!_earns(p)) return (0, 0);
        uint256 fundedIndex = _indexes.fundedIndex;
        (funded, pending) = _earned(p.balance, p.interestIndex, interestIndex, fundedIndex);
        Owed memory owed = _owedOf(holder, p);
        funded += owed.couponFunded;
        if (p.interestIndex <= fundedIndex) funded += owed.couponPending;
        else pending += owed.couponPending;
    }

    /// @dev The holder's coupon slot, read only if its flags say it holds coupon.
    function _owedOf(address holder, Position memory p) private view returns (Owed memory owed) {
        if (p.flags & (_PENDING | _FUNDED) != 0) owed = _owed[holder];
    }

    /// @dev Whether the position is face that earns: out of escrow, or in
    ///      escrow once drawn down (not before, not after a cancellation).
    function _earns(Position memory p) private view returns (bool) {
        return p.flags & _ESCROWED == 0 || _faceIssued();
    }

    /// @dev The face has been minted: drawn down (Active, Repaid, WrittenOff).
    function _faceIssued() private view returns (bool) {
        State s = _accrual.state;
        return s >= State.Active && s != State.Cancelled;
    }

    /// @dev Accrued (rounded up) minus allocated and held interest.
    function _interestDue(uint256 accruedScaled, CashIn memory cash) private pure returns (uint256) {
        uint256 accrued = Math.ceilDiv(accruedScaled, _INDEX_SCALE);
        uint256 paid = uint256(cash.funded) + cash.held;
        return accrued > paid ? accrued - paid : 0;
    }

    function _updateRate() private {
        Rates memory r = _rates;
        uint256 oldRate = _accrual.rateBps;
        uint256 newRate = _clampedRate(r.referenceRateBps, r.rateStepBps);
        _accrual.rateBps = uint16(newRate);
        emit RateChanged(oldRate, newRate, r.referenceRateBps, _terms.spreadBps, r.rateStepBps);
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

    /// @dev One call site per identity query (contract size).
    function _requireVerified(address account) private view {
        _identities.requireVerified(account);
    }

    function _isVerified(address account) private view returns (bool) {
        return _identities.isVerified(account);
    }

    function _requireNotPaused() private view {
        if (_accrual.paused) revert EnforcedPause();
    }

    function _requireState(State expected) private view {
        State s = _accrual.state;
        if (s != expected) revert StateIs(s, expected);
    }

    /// @dev Also the bounds the packed positions rely on: face in 96 bits,
    ///      and a cap of at most 100 % a year, so the coupon index fits a
    ///      position's 96 bits for 79 years of accrual.
    function _validateTerms(Terms calldata t) private view {
        if (t.maxSize == 0 || t.maxSize > type(uint96).max) revert TermsInvalid("maxSize zero or above 2^96");
        if (t.subscriptionEnd <= t.subscriptionStart || t.subscriptionEnd < block.timestamp) {
            revert TermsInvalid("subscription window empty or past");
        }
        if (t.maturity <= t.subscriptionEnd) revert TermsInvalid("maturity before subscription end");
        if (t.floorRateBps > t.capRateBps || t.capRateBps > _BPS) revert TermsInvalid("floor above cap, or cap > 100%");
        if (t.minCollateralRatioBps == 0) revert TermsInvalid("minCollateralRatioBps is zero");
    }
}
