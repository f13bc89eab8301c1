"""A synthetic voucher landscape over a lake (telemetry, allocations, vouchers, claims,
planted findings) for the demo and the tests."""
