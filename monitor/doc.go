// Package monitor serves courriel's optional HTTP listener: Prometheus
// metrics, a health check and mail-client autoconfiguration.
//
// Its one job is to expose what the other components report; it imports no
// other courriel package. cmd/courriel builds one *Metrics with NewMetrics,
// passes it to the SMTP, IMAP and delivery code (which call its event
// methods, all no-ops on a nil *Metrics so a disabled listener needs no
// checks), hands it scrape-time functions (directory counters, the queue's
// in-memory counts) and serves Handler through NewServer. Metrics and the
// health check's detail are for trusted networks (Options.Trusted, loopback
// by default); autoconfig is public, so its hosted-domain lookups, made on
// the directory connections mail and logins use, are bounded in time and
// in number (a request past maxAutoconfigLookups in flight gets 503).
//
// Nothing here touches Prometheus' global default registry: every Metrics
// owns its registry, so tests can build as many as they like in parallel.
//
// Microsoft-style autodiscover (/autodiscover/autodiscover.xml) is not
// served: it is a POST of an XML request document, which this GET/HEAD-only
// listener refuses on purpose, and Outlook's IMAP support for it is partial.
package monitor
