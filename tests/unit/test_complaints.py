"""How a refused value is shown in its message."""

from modelserver.complaints import field_path, shown


def test_a_value_nested_too_deeply_to_write_is_named_so():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert shown(deep) == "lists or objects nested too deeply to show"
    assert shown([1, "x"]) == '[1, "x"]'
    assert shown("x" * 100).endswith("...")


def test_a_client_s_long_key_is_shortened_in_a_path():
    assert field_path("scores", ("k" * 900_000,)) == "scores." + "k" * 100 + "..."
    assert field_path("m", ("9" * 5000, "[key]")) == f"key '{'9' * 100}...' of m"
    assert field_path("order", ("items", 2, "when")) == "order.items[2].when"
