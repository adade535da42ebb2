"""Easel's platform-neutral core: rounds, images, quotas, the store and the studio that ties them."""
