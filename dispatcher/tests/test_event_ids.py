"""The ids of the events an in-process call builds: version-4 UUIDs in `str(uuid.uuid4())`'s
form, as the callee's processor would give it (they come from a seeded generator rather than
`os.urandom`, so the form is checked here)."""

import itertools
import sys
import threading
import unittest
import unittest.mock
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

    def test_the_counter_is_the_last_twelve_digits_across_blocks_and_its_wrap(self):
        for start in (4096 * 7 - 3, (1 << 48) - 2):
            with self.subTest(start=start), unittest.mock.patch.multiple(
                _codec, _ID_NEXT=itertools.count(start).__next__, _ID_BLOCK=(None, None)
            ):
                ids = [_codec.uuid4_string() for _ in range(6)]
                self.assertEqual(
                    [text[-12:] for text in ids],
                    ["%012x" % ((start + i) & ((1 << 48) - 1)) for i in range(6)],
                )
                self.assertTrue(all(text[:-12] == ids[0][:-12] for text in ids))

    def test_threads_taking_ids_across_blocks_never_share_one(self):
        ids = []

        def take():
            taken = [_codec.uuid4_string() for _ in range(5000)]
            ids.extend(taken)

        threads = [threading.Thread(target=take) for _ in range(4)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        finally:
            sys.setswitchinterval(interval)
        self.assertEqual(len(ids), 20000)
        self.assertEqual(len(set(ids)), len(ids))

    def test_a_new_event_gets_a_fresh_id(self):
        trigger = _codec.nuclio_sdk.TriggerInfo("http", "default-http")
        first = _codec.new_event(b"", "", {}, "POST", "/callee", {}, trigger)
        second = _codec.new_event(b"", "", {}, "POST", "/callee", {}, trigger)
        self.assertNotEqual(first.id, second.id)
        self.assertEqual(uuid.UUID(first.id).version, 4)


if __name__ == "__main__":
    unittest.main()
