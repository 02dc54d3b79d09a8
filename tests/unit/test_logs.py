import logging

import orjson

from streams.logs import JsonFormatter, level_number


def test_json_lines_carry_level_logger_message_and_utc_time():
    record = logging.LogRecord("churnwatch.x", logging.WARNING, __file__, 1, "lag %d", (7,), None)
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["level"] == "warning" and doc["logger"] == "churnwatch.x" and doc["msg"] == "lag 7"
    assert doc["ts"].endswith("Z") and "T" in doc["ts"]


def test_faust_style_warn_level_is_accepted():
    assert level_number("warn") == logging.WARNING
    assert level_number("info") == logging.INFO
