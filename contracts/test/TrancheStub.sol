// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Test double of a note tranche, as the collateral registry sees it
/// @notice Answers the two INoteTranche views the registry calls, with
///         values anyone can set. Test-only: never deployed for real.
contract TrancheStub {
    uint256 private _principalOutstanding;
    bool private _repaid;

    /// @notice Sets what `principalOutstanding` returns.
    function setPrincipalOutstanding(uint256 principal) external {
        _principalOutstanding = principal;
    }

    /// @notice Sets what `isRepaid` returns.
    function setRepaid(bool repaid) external {
        _repaid = repaid;
    }

    /// @notice Mirrors INoteTranche.principalOutstanding.
    function principalOutstanding() external view returns (uint256) {
        return _principalOutstanding;
    }

    /// @notice Mirrors INoteTranche.isRepaid.
    function isRepaid() external view returns (bool) {
        return _repaid;
    }
}
