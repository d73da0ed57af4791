// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title Valuation of depreciating GPU collateral
/// @notice Straight-line markdown per full quarter in service, never below a
///         floor, times one minus the model's obsolescence haircut. Pure
///         math; the registry supplies the class, the haircut and the clock.
library Depreciation {
    /// @notice Basis points in one whole.
    uint256 internal constant BPS = 10_000;

    /// @notice One quarter: 365.25 days / 4 = 7,889,400 seconds.
    uint256 internal constant QUARTER = 7_889_400;

    /// @notice Full quarters from `inServiceAt` to `nowTs` (0 if not yet in
    ///         service).
    /// @dev Rounds down, by definition of the curve: the markdown is taken at
    ///      the end of each full quarter. The protocol stays conservative
    ///      because a batch's in-service date is the earliest of its GPUs.
    function quartersElapsed(uint256 inServiceAt, uint256 nowTs) internal pure returns (uint256) {
        if (nowTs <= inServiceAt) return 0;
        return (nowTs - inServiceAt) / QUARTER; // rounds down (see above)
    }

    /// @notice Depreciation factor after `quarters` full quarters:
    ///         `max(floorBps, BPS - quarters x markdownBps)`, saturating.
    /// @dev No division. Expects `floorBps <= BPS`. Any `quarters >= BPS`
    ///      with a non-zero markdown is already at the floor, so the product
    ///      is bounded before multiplying and never overflows.
    function factorBps(uint256 quarterlyMarkdownBps, uint256 floorBps, uint256 quarters)
        internal
        pure
        returns (uint256)
    {
        if (quarterlyMarkdownBps == 0) return BPS;
        uint256 markdown = Math.min(quarters, BPS) * quarterlyMarkdownBps;
        if (markdown >= BPS) return floorBps;
        return Math.max(floorBps, BPS - markdown);
    }

    /// @notice `cost x factorBps x (BPS - haircutBps) / BPS^2`.
    /// @dev Rounds down (Math.mulDiv), in the protocol's favour: collateral
    ///      is never overstated. Expects `factorBps, haircutBps <= BPS`.
    function value(uint256 cost, uint256 factorBps_, uint256 haircutBps) internal pure returns (uint256) {
        return Math.mulDiv(cost, factorBps_ * (BPS - haircutBps), BPS * BPS); // rounds down
    }
}
