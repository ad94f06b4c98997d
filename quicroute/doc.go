// Package quicroute keeps QUIC connections alive across baton upgrades:
// a quic-go server's connections stay with the generation that accepted
// them until they end gracefully, while the newest generation takes every
// new one. It is Meta's mvfst design for quic-go.
//
// # The problem
//
// Every generation of a baton server holds the same UDP socket, and the
// kernel gives each datagram to whichever process reads first. Without
// routing, the newest generation receives datagrams of connections it does
// not know (and answers them with a stateless reset, or drops them until
// the client's idle timeout), and a retiring generation keeps taking
// datagrams — new connections included — that belong to the newest.
//
// # The design
//
//   - Connection IDs name the generation: CIDGenerator issues 12-byte IDs,
//     the generation as a big-endian uint32 then 8 random bytes. Every
//     packet a client sends after the handshake's first flight carries one
//     as its destination connection ID.
//   - Classify reads a datagram's header, strictly and without state
//     (RFC 8999 §5, RFC 9000 §17): an Initial or 0-RTT packet is a new
//     connection, for the newest generation, unless its destination ID has
//     the length of ours: a client continuing a handshake sends those to
//     the ID the server chose, and the Router relays them to the
//     generation it names if that one lives (a client's random ID that
//     happens to look like ours names one with odds of about
//     generations/2^32, and still reaches the newest if that generation is
//     gone or not among the plausible ones); a Handshake or short-header
//     packet belongs to the generation its destination ID names; anything
//     else stays where it was read, and quic-go drops it.
//   - Router is the net.PacketConn given to quic.Transport. It reads the
//     socket in one goroutine, hands this generation's datagrams to
//     quic-go through a bounded queue, and relays the others over baton's
//     generation links (Upgrader.RelayPacket, channel "quic"); datagrams
//     relayed to this generation (Upgrader.RelayedPackets) are merged into
//     what quic-go reads. Writes go to the socket itself: an old
//     generation answers its clients from its own copy. Once a successor
//     serves (Exit), the Router stops reading the socket, so the newest is
//     its only reader, and lives on relayed datagrams.
//   - Keys travel with the generation state: the stateless reset key and
//     the address-validation token key (Keys, state "quicroute.keys"), and
//     the TLS session ticket keys (baton's Upgrader.TLSSessionTickets), so
//     that tokens, resets and 0-RTT resumption work in every generation.
//   - Conns counts a generation's connections from first packet to end;
//     Conns.Drain lets handshakes under way finish, sends HTTP/3 GOAWAY
//     (http3.Server.Shutdown), waits for requests in progress and for the
//     clients to close, and at the deadline closes what is left with
//     H3_NO_ERROR: a connection of an old generation never ends by an idle
//     timeout or a stateless reset.
//
// # Bounds and limits
//
//   - Every queue is bounded: the Router's queue to quic-go (Options.Queue),
//     baton's link queues and RelayedPackets. A datagram that finds one
//     full is dropped and counted; QUIC retransmits.
//   - A datagram for a generation that is gone (or never was) is dropped
//     and counted by baton, never looped: a relayed datagram travels only
//     toward the generation it names.
//   - Between the successor's ready and the retiring generation's Exit,
//     both read the socket: a new connection whose first datagram the
//     retiring one reads is its to serve and drain, and the rest of that
//     handshake reaches it by its connection ID. Once Exit is closed the
//     Router stops reading at once (Upgrader.HandedOver says a successor
//     took over; on the final stop it reads on, for the drain), and a new
//     connection's datagram it read in that instant goes to the successor. A client's first flight split over two datagrams (a
//     post-quantum key share makes the ClientHello longer than one) can be
//     split between the two readers in that window: the client's
//     retransmission completes the handshake with the successor, and the
//     half the retiring one holds ends by quic-go's handshake timeout,
//     which Drain waits for (bounded by its deadline).
//   - A datagram still on its way when its generation exits (a client's
//     acknowledgement of its own close, say) is dropped and counted: its
//     connection is over.
//   - The generation is visible in every connection ID (see CIDGenerator):
//     an observer learns how often the server was upgraded and can group a
//     generation's connections.
//   - A client that migrates to a new address keeps its connection IDs and
//     is routed the same way; one whose datagrams reach another host behind
//     a load balancer is outside this package.
//   - Linux and macOS, like baton's upgrades; a datagram is at most
//     baton.MaxRelayedPacket bytes.
//
// # Without routing
//
// A server that does not use Router (random connection IDs, the socket
// given to quic.Transport as it is, the old generation calling
// http3.Server.Shutdown) is what quic-go users get today; examples/http3
// runs that with -route=false for the comparison.
package quicroute
