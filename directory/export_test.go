package directory

import "time"

// SetPreferredCheckEvery sets how often lookups on a fallback URL try the
// earlier ones (0: never, the Watcher alone brings them back).
func SetPreferredCheckEvery(d *Directory, every time.Duration) {
	d.searches.checkEvery = every
	d.binds.checkEvery = every
}

// PagingRefusalFor is how long a server that refused paging gets plain
// searches.
const PagingRefusalFor = pagingRefusalFor

// FailedURLsFor is how long a URL whose setup failed is tried last.
const FailedURLsFor = failedURLsFor
