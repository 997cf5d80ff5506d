// Package cluster describes the nodes of a courriel cluster: N nodes on a
// replicated OpenLDAP directory, each user at home on one node (the
// directory's home attribute, default mailHost), any node serving anyone.
//
// It holds what every protocol needs to hand a user's session or mail to
// the home node: the node names and their internal addresses, the shared
// secret the internal hops authenticate with, and the TLS settings of those
// hops. It knows nothing of the protocols themselves: smtp and the queue
// route copies with it, imap and managesieve proxy sessions with it.
//
// The internal hops, all authenticated with the shared secret:
//   - mail: SMTP to the home node's listen.cluster listener, AUTH PLAIN as
//     ClusterLogin; that listener delivers only to users homed there.
//   - IMAP and ManageSieve: the front node authenticates the client itself,
//     then opens the home node's listener (STARTTLS when TLS is on), sends
//     ID with the client's address and a hop counter (IDOriginatingIP,
//     IDOriginatingPort, IDProxyTTL, Dovecot's keys) and logs in with SASL
//     PLAIN, authorization identity the user, authentication identity
//     ClusterLogin, password the secret; then it passes bytes through.
package cluster
