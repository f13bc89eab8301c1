"""Alert rules over the fleet windows, their runner and their sinks."""
