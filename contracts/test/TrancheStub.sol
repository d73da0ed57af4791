// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {INoteTranche} from "../interfaces/INoteTranche.sol";

/// @title Test double of a note tranche, as the collateral registry sees it
/// @notice Answers the INoteTranche views the registry calls, with values
///         anyone can set. Test-only: never deployed for real.
contract TrancheStub {
    uint256 private _principalOutstanding;
    bool private _repaid;
    INoteTranche.State private _state;

    /// @notice Sets what `principalOutstanding` returns.
    function setPrincipalOutstanding(uint256 principal) external {
        _principalOutstanding = principal;
    }

    /// @notice Sets what `isRepaid` returns, and `state` to Repaid (true) or Active (false).
    function setRepaid(bool repaid) external {
        _repaid = repaid;
        _state = repaid ? INoteTranche.State.Repaid : INoteTranche.State.Active;
    }

    /// @notice Sets what `state` returns.
    function setState(INoteTranche.State state_) external {
        _state = state_;
    }

    /// @notice Mirrors INoteTranche.principalOutstanding.
    function principalOutstanding() external view returns (uint256) {
        return _principalOutstanding;
    }

    /// @notice Mirrors INoteTranche.isRepaid.
    function isRepaid() external view returns (bool) {
        return _repaid;
    }

    /// @notice Mirrors INoteTranche.state.
    function state() external view returns (INoteTranche.State) {
        return _state;
    }
}
