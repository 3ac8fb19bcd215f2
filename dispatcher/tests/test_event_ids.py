"""The ids of the events an in-process call builds: version-4 UUIDs in `str(uuid.uuid4())`'s
form, as the callee's processor would give it (they come from a seeded generator rather than
`os.urandom`, so the form is checked here)."""

import unittest
import uuid

from fusionizer_dispatcher import _codec


class EventIdTest(unittest.TestCase):
    def test_ids_are_distinct_version_4_uuids_in_canonical_form(self):
        ids = [_codec.uuid4_string() for _ in range(2000)]
        self.assertEqual(len(set(ids)), len(ids))
        for text in ids:
            parsed = uuid.UUID(text)
            self.assertEqual(str(parsed), text)
            self.assertEqual(parsed.version, 4)
            self.assertEqual(parsed.variant, uuid.RFC_4122)

    def test_a_new_event_gets_a_fresh_id(self):
        trigger = _codec.nuclio_sdk.TriggerInfo("http", "default-http")
        first = _codec.new_event(b"", "", {}, "POST", "/callee", {}, trigger)
        second = _codec.new_event(b"", "", {}, "POST", "/callee", {}, trigger)
        self.assertNotEqual(first.id, second.id)
        self.assertEqual(uuid.UUID(first.id).version, 4)


if __name__ == "__main__":
    unittest.main()
