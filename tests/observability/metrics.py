"""Parse a Prometheus text exposition (stdin) with the reference Python parser and print every
sample as JSON: [{"name": ..., "labels": {...}, "value": ...}, ...].

The end-to-end tests use it so `/metrics` is checked by a real Prometheus text parser, not by
the gateway's own idea of its format."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    samples = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        for sample in family.samples:
            samples.append(
                {
                    "family": family.name,
                    "type": family.type,
                    "name": sample.name,
                    "labels": sample.labels,
                    "value": sample.value,
                }
            )
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    main()
