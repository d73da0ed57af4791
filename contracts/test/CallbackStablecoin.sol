// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Hostile 6-decimal stablecoin with transfer callbacks (test only)
/// @notice Behaves like an ERC-777 token whose hooks call back into the
///         protocol: once armed, the next balance change (transfer, transferFrom,
///         mint) runs a list of calls before returning, as a hostile token or a
///         hostile recipient's hook would. Each call's outcome is recorded
///         instead of bubbling up, so a test sees both that the outer
///         operation went through and why every re-entrant call failed. The
///         calls come from the token's address: a test grants it whatever
///         roles make access control pass, so only a reentrancy guard can
///         stop them. Never deployed outside tests.
contract CallbackStablecoin is ERC20 {
    /// @notice One re-entrant call made from a transfer hook.
    struct Attempt {
        address target;
        bytes data;
        bool success;
        bytes returnData;
    }

    /// @notice A hook ran `target.call(data)` during a balance change.
    event CallbackAttempted(address indexed target, bytes4 selector, bool success, bytes returnData);

    address[] private _targets;
    bytes[] private _payloads;
    Attempt[] private _attempts;
    bool private _armed;
    bool private _inHook;

    constructor() ERC20("Callback USD", "cbUSD") {}

    /// @notice Anyone may mint: this is a test token.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Arms the hook: the next balance change makes these calls, in order.
    function arm(address[] calldata targets, bytes[] calldata payloads) external {
        require(targets.length == payloads.length, "length mismatch");
        delete _targets;
        delete _payloads;
        delete _attempts;
        for (uint256 i = 0; i < targets.length; ++i) {
            _targets.push(targets[i]);
            _payloads.push(payloads[i]);
        }
        _armed = true;
    }

    /// @notice True until an armed hook has run.
    function armed() external view returns (bool) {
        return _armed;
    }

    /// @notice The calls the last hook made, with their outcomes.
    function attempts() external view returns (Attempt[] memory) {
        return _attempts;
    }

    /// @dev Fires the armed calls once, after the balances have moved.
    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (!_armed || _inHook) return;
        _armed = false;
        _inHook = true;
        for (uint256 i = 0; i < _targets.length; ++i) {
            (bool success, bytes memory returnData) = _targets[i].call(_payloads[i]);
            _attempts.push(Attempt(_targets[i], _payloads[i], success, returnData));
            emit CallbackAttempted(_targets[i], bytes4(_payloads[i]), success, returnData);
        }
        _inHook = false;
    }
}
