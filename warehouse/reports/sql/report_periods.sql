-- report_periods: the periods of a report as UTC epoch-ms instants [p0, p1): local days or months in $tz, clipped to the requested local dates; without them, the whole periods the data touches (data_span); inputs: data_span; params: $tz, $unit ('day'|'month'), $label (strftime format), $date_from, $date_to (inclusive local dates or NULL)
CREATE OR REPLACE TEMP TABLE report_periods AS
WITH
-- the report window in local dates: the requested dates, else the whole periods the data touches
win AS (
    SELECT
        coalesce(
            CAST($date_from AS DATE),
            CAST(date_trunc($unit, timezone($tz, lo)) AS DATE)
        ) AS d0,
        coalesce(
            CAST($date_to AS DATE),
            CAST(date_trunc($unit, timezone($tz, hi)) + CAST('1 ' || $unit AS INTERVAL) AS DATE) - 1
        ) AS d1
    FROM data_span
),
starts AS (
    SELECT
        d0,
        d1,
        unnest(generate_series(
            date_trunc($unit, CAST(d0 AS TIMESTAMP)),
            CAST(d1 AS TIMESTAMP),
            CAST('1 ' || $unit AS INTERVAL)
        )) AS b
    FROM win
    WHERE d0 <= d1
),
-- local-time periods as UTC epoch-ms instants [p0, p1), clipped to the requested dates
periods AS (
    SELECT
        strftime(b, $label) AS period,
        epoch_ms(timezone($tz, greatest(b, CAST(d0 AS TIMESTAMP)))) AS p0,
        epoch_ms(timezone($tz, least(b + CAST('1 ' || $unit AS INTERVAL), CAST(d1 + 1 AS TIMESTAMP)))) AS p1
    FROM starts
)
SELECT * FROM periods;
