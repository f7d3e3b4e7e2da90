"""How a refused value is shown in its message."""

from modelserver.complaints import shown


def test_a_value_nested_too_deeply_to_write_is_named_so():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert shown(deep) == "lists or objects nested too deeply to show"
    assert shown([1, "x"]) == '[1, "x"]'
    assert shown("x" * 100).endswith("...")
