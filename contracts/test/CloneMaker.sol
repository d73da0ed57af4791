// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";

/// @title Test double: makes bare clones for unit tests (never deployed for real)
/// @notice Unit tests wire a tranche or servicer clone by hand (a plain wallet
///         as the servicer, say); the factory does it in one transaction.
contract CloneMaker {
    event Cloned(address instance);

    function clone(address implementation) external returns (address instance) {
        instance = Clones.clone(implementation);
        emit Cloned(instance);
    }

    function cloneWithArgs(address implementation, bytes calldata args) external returns (address instance) {
        instance = Clones.cloneWithImmutableArgs(implementation, args);
        emit Cloned(instance);
    }
}
