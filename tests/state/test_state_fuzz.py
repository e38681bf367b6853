"""CI-sized fuzz run (the 100,000-case run is `python -m pyv86.state.fuzz --cases 100000`)."""
from __future__ import annotations

from pyv86.state import fuzz


def test_mutated_images_only_ever_give_clear_errors():
    result = fuzz.run(3000, seed=20261125, progress=False)
    assert result["failures"] == []
    families = result["by_family"]
    # the mutations reach past the checksums: re-signed manifests and blobs get decoded
    assert families["manifest"]["rejected"] > 0 and families["blob"]["rejected"] > 0
    assert families["truncate"]["restored"] == 0 and families["bitflip"]["restored"] == 0
