"""The same lake and reports on Spark: views registered over the same Delta snapshots, the
SQL rendered for Spark, a connection the reports run on unchanged."""
