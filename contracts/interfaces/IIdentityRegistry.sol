// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Identity registry of KYC-whitelisted holders (ERC-3643 style)
/// @notice Every address that may hold, subscribe to or receive a gpucredit
///         note is listed here by a KYC agent, with an expiry date. An agent
///         can freeze an identity (court order, sanctions hit) without
///         deleting it.
///
///         Roles (OpenZeppelin AccessControl): `DEFAULT_ADMIN_ROLE` grants
///         and revokes roles and is handed over in two steps with a delay
///         (AccessControlDefaultAdminRules); `AGENT_ROLE` (KYC agent) writes
///         identities.
interface IIdentityRegistry {
    /// @notice An identity was added or its expiry or country changed.
    event IdentityRegistered(address indexed account, uint16 country, uint64 expiresAt);
    /// @notice An identity was removed.
    event IdentityRemoved(address indexed account);
    /// @notice An identity was frozen (`frozen` true) or unfrozen.
    event IdentityFrozen(address indexed account, bool frozen);

    /// @notice The account has no identity in the registry.
    error IdentityUnknown(address account);
    /// @notice The identity's KYC expired at `expiresAt`.
    error IdentityExpired(address account, uint64 expiresAt);
    /// @notice The identity is frozen.
    error IdentityIsFrozen(address account);
    /// @notice The expiry date is not in the future.
    error IdentityExpiryInPast(address account, uint64 expiresAt);
    /// @notice The zero address cannot hold an identity.
    error IdentityZeroAddress();

    /// @notice Role of the KYC agents: `keccak256("AGENT_ROLE")`.
    function AGENT_ROLE() external view returns (bytes32);

    /// @notice Adds or renews an identity. Agent only. Renewing keeps the
    ///         identity's frozen flag: a renewal never unfreezes.
    function registerIdentity(address account, uint16 country, uint64 expiresAt) external;

    /// @notice Adds or renews many identities with the same expiry. Agent only.
    function registerIdentities(address[] calldata accounts, uint16 country, uint64 expiresAt) external;

    /// @notice Removes an identity. Agent only.
    function removeIdentity(address account) external;

    /// @notice Freezes or unfreezes an account, listed or not (a freeze is
    ///         kept when the identity is removed and registered again). Agent only.
    function setFrozen(address account, bool frozen) external;

    /// @notice True when `account` is listed, unexpired and not frozen.
    function isVerified(address account) external view returns (bool);

    /// @notice Reverts with the reason `account` may not hold notes, if any:
    ///         `IdentityUnknown`, then `IdentityIsFrozen`, then
    ///         `IdentityExpired` (a frozen identity reports the freeze even
    ///         when it has also expired). One storage read.
    function requireVerified(address account) external view;

    /// @notice Reverts IdentityIsFrozen if `account` is frozen (listed or
    ///         not: a freeze survives removal and re-registration); an
    ///         expired or removed identity passes. Tranches use it when a
    ///         holder claims what it is already owed to its own address.
    function requireNotFrozen(address account) external view;

    /// @notice The stored identity of `account`; all zero when unlisted
    ///         (a listed identity always has a non-zero `expiresAt`), except
    ///         `frozen`, which outlives removal.
    function identityOf(address account) external view returns (uint16 country, uint64 expiresAt, bool frozen);
}
