def test_mock_stablecoin_has_six_decimals(MockStablecoin, accounts):
    usd = MockStablecoin.deploy("Mock USD", "mUSD", {"from": accounts[0]})
    usd.mint(accounts[1], 5_000_000, {"from": accounts[0]})
    assert usd.decimals() == 6
    assert usd.balanceOf(accounts[1]) == 5_000_000
