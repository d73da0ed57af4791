// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IIdentityRegistry} from "../interfaces/IIdentityRegistry.sol";

/// @title Identity registry of KYC-whitelisted holders (ERC-3643 style)
/// @notice See {IIdentityRegistry}. Tranches call `requireVerified` on every
///         transfer, so each identity lives in one packed storage slot and a
///         check costs a single read.
contract IdentityRegistry is IIdentityRegistry, AccessControlDefaultAdminRules {
    /// @notice One identity, packed into one slot (2 + 8 + 1 + 1 bytes).
    struct Identity {
        uint16 country; // ISO 3166-1 numeric code
        uint64 expiresAt; // KYC valid while block.timestamp < expiresAt
        bool frozen;
        bool listed;
    }

    /// @inheritdoc IIdentityRegistry
    bytes32 public constant AGENT_ROLE = keccak256("AGENT_ROLE");

    /// @dev Initial wait between starting and accepting a transfer of `DEFAULT_ADMIN_ROLE`.
    uint48 private constant _ADMIN_TRANSFER_DELAY = 2 days;

    mapping(address account => Identity) private _identities;

    /// @param admin receives `DEFAULT_ADMIN_ROLE` and `AGENT_ROLE`.
    constructor(address admin) AccessControlDefaultAdminRules(_ADMIN_TRANSFER_DELAY, _nonZero(admin)) {
        _grantRole(AGENT_ROLE, admin);
    }

    /// @inheritdoc IIdentityRegistry
    function registerIdentity(address account, uint16 country, uint64 expiresAt) external onlyRole(AGENT_ROLE) {
        _registerIdentity(account, country, expiresAt);
    }

    /// @inheritdoc IIdentityRegistry
    function registerIdentities(address[] calldata accounts, uint16 country, uint64 expiresAt)
        external
        onlyRole(AGENT_ROLE)
    {
        for (uint256 i = 0; i < accounts.length; ++i) {
            _registerIdentity(accounts[i], country, expiresAt);
        }
    }

    /// @inheritdoc IIdentityRegistry
    function removeIdentity(address account) external onlyRole(AGENT_ROLE) {
        Identity storage identity = _identities[account];
        if (!identity.listed) revert IdentityUnknown(account);
        // The freeze outlives the removal: re-registering never clears it.
        _identities[account] = Identity({country: 0, expiresAt: 0, frozen: identity.frozen, listed: false});
        emit IdentityRemoved(account);
    }

    /// @inheritdoc IIdentityRegistry
    function setFrozen(address account, bool frozen) external onlyRole(AGENT_ROLE) {
        if (account == address(0)) revert IdentityZeroAddress();
        _identities[account].frozen = frozen;
        emit IdentityFrozen(account, frozen);
    }

    /// @inheritdoc IIdentityRegistry
    function isVerified(address account) external view returns (bool) {
        Identity memory identity = _identities[account];
        return identity.listed && identity.expiresAt > block.timestamp && !identity.frozen;
    }

    /// @inheritdoc IIdentityRegistry
    function requireVerified(address account) external view {
        Identity memory identity = _identities[account];
        if (!identity.listed) revert IdentityUnknown(account);
        if (identity.frozen) revert IdentityIsFrozen(account);
        if (identity.expiresAt <= block.timestamp) revert IdentityExpired(account, identity.expiresAt);
    }

    /// @inheritdoc IIdentityRegistry
    function requireNotFrozen(address account) external view {
        if (_identities[account].frozen) revert IdentityIsFrozen(account);
    }

    /// @inheritdoc IIdentityRegistry
    function identityOf(address account) external view returns (uint16 country, uint64 expiresAt, bool frozen) {
        Identity memory identity = _identities[account];
        return (identity.country, identity.expiresAt, identity.frozen);
    }

    /// @dev The constructor's admin, or IdentityZeroAddress (checked before the base constructor runs).
    function _nonZero(address admin) private pure returns (address) {
        if (admin == address(0)) revert IdentityZeroAddress();
        return admin;
    }

    /// @dev Writes the whole slot at once; keeps the frozen flag on renewal.
    function _registerIdentity(address account, uint16 country, uint64 expiresAt) private {
        if (account == address(0)) revert IdentityZeroAddress();
        if (expiresAt <= block.timestamp) revert IdentityExpiryInPast(account, expiresAt);
        Identity storage identity = _identities[account];
        _identities[account] = Identity({country: country, expiresAt: expiresAt, frozen: identity.frozen, listed: true});
        emit IdentityRegistered(account, country, expiresAt);
    }
}
