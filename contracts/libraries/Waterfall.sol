// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IServicer} from "../interfaces/IServicer.sol";

/// @title Revenue waterfall of one period (pure)
/// @notice Performing:  fees -> senior interest -> junior interest ->
///         scheduled principal (senior, then junior) -> debt-service reserve
///         up to its target -> cash sweep (a share of what is left prepays
///         senior principal, while the sweep is on) -> equity (held as
///         trapped cash while equity is blocked; trapped cash re-enters the
///         next period's waterfall). An interest shortfall draws on the
///         reserve first, senior before junior; unpaid interest stays due in
///         the tranche and is paid first next time, never lost. Reserve
///         above its target (it falls as senior principal is repaid) is
///         drawn back into the period's cash first (counted in reserveDrawn).
///         Wind-down (after step-in): fees -> senior interest -> senior
///         principal -> junior interest -> junior principal -> equity only
///         once both tranches are repaid.
library Waterfall {
    struct Due {
        uint256 cashIn;
        uint256 reserveBalance;
        uint256 reserveTarget;
        uint256 fees;
        uint256 seniorInterest;
        uint256 juniorInterest;
        uint256 seniorPrincipal; // scheduled
        uint256 juniorPrincipal; // scheduled
        uint256 seniorOutstanding;
        uint256 juniorOutstanding;
        uint256 sweepShareBps;
        bool sweepOn;
        bool equityBlocked;
        bool windDown;
    }

    /// @notice Splits `d.cashIn` into the buckets. Sweep rounds down.
    function distribute(Due memory d) internal pure returns (IServicer.WaterfallResult memory r) {
        uint256 cash = d.cashIn;
        uint256 reserve = d.reserveBalance;
        uint256 paid;
        uint256 released = 0;
        if (!d.windDown && reserve > d.reserveTarget) {
            // Reserve above its target goes back into the period's cash.
            released = reserve - d.reserveTarget;
            reserve = d.reserveTarget;
            cash += released;
        }

        (paid, cash) = _take(cash, d.fees);
        r.fees = uint128(paid);

        (paid, cash) = _take(cash, d.seniorInterest);
        uint256 drawn = Math.min(reserve, d.seniorInterest - paid);
        reserve -= drawn;
        r.seniorInterest = uint128(paid + drawn);
        uint256 reserveDrawn = drawn + released;

        if (d.windDown) {
            (paid, cash) = _take(cash, d.seniorOutstanding);
            r.seniorPrincipal = uint128(paid);
        }

        (paid, cash) = _take(cash, d.juniorInterest);
        drawn = Math.min(reserve, d.juniorInterest - paid);
        reserve -= drawn;
        r.juniorInterest = uint128(paid + drawn);
        reserveDrawn += drawn;
        r.reserveDrawn = uint128(reserveDrawn);

        if (d.windDown) {
            (paid, cash) = _take(cash, d.juniorOutstanding);
            r.juniorPrincipal = uint128(paid);
            bool repaid = r.seniorPrincipal == d.seniorOutstanding && r.juniorPrincipal == d.juniorOutstanding;
            if (repaid) r.equity = uint128(cash);
            else r.trapped = uint128(cash);
            r.cashIn = uint128(d.cashIn);
            r.reserveBalance = uint128(reserve);
            return r;
        }

        (paid, cash) = _take(cash, d.seniorPrincipal);
        r.seniorPrincipal = uint128(paid);
        (paid, cash) = _take(cash, d.juniorPrincipal);
        r.juniorPrincipal = uint128(paid);

        (paid, cash) = _take(cash, d.reserveTarget > reserve ? d.reserveTarget - reserve : 0);
        reserve += paid;
        r.reserveAdded = uint128(paid);

        if (d.sweepOn) {
            uint256 room = d.seniorOutstanding - r.seniorPrincipal;
            (paid, cash) = _take(cash, Math.min(Math.mulDiv(cash, d.sweepShareBps, 10_000), room));
            r.sweep = uint128(paid);
        }

        if (d.equityBlocked) r.trapped = uint128(cash);
        else r.equity = uint128(cash);
        r.cashIn = uint128(d.cashIn);
        r.reserveBalance = uint128(reserve);
    }

    function _take(uint256 cash, uint256 want) private pure returns (uint256 paid, uint256 left) {
        paid = Math.min(cash, want);
        left = cash - paid;
    }
}
