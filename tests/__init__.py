import pytest

pytest.register_assert_rewrite("tests.helpers")  # the shared helpers' asserts explain themselves as the tests' do
