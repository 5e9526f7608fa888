"""Test helpers of the secured UI gateway (the tests are reconciliation_tests/test_gateway_*.py)."""
