"""Replays of public traces as contract records (paced by ``collectors.pace``)."""
