"""The planted-agent battery on `red-door` (agents and their known verdicts and readings: tests/planted_battery.py)."""

from planted_battery import battery_tests

test_verdict_and_reading, test_verdict_and_reading_more_episode_seeds = battery_tests("red-door")
