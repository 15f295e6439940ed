"""Running streams: sessions, the batched engine, render workers and offline rendering."""
