// The node suite's sidecar codebase (test/node/meshed_test.go publishes it
// in the pipy-repo at the path FSM's controller uses for each proxy). It
// plays the part of FSM's generated configuration just enough to prove the
// injected pod's plumbing: the iptables REDIRECTs land on 15003/15001, the
// rewritten health probes on 15901-15903, and the counters on the metrics
// port (15010, never redirected) show what went through the proxy.
var counts = { codebase: 'fsm-webhooks-node-test', inbound: 0, outbound: 0, health: 0, inboundPorts: {}, outboundTargets: {} }

pipy({
  _target: '',
})

// Inbound: the original destination port (SO_ORIGINAL_DST) on loopback,
// where the app listens. The sidecar's own connection (uid 1500) to
// 127.0.0.1 is not redirected again.
.listen(15003, { transparent: true })
  .connect(() => (
    counts.inbound++,
    counts.inboundPorts[__inbound.destinationPort] = (counts.inboundPorts[__inbound.destinationPort] || 0) + 1,
    `127.0.0.1:${__inbound.destinationPort}`
  ))

// Outbound: straight to the original destination.
.listen(15001, { transparent: true })
  .connect(() => (
    _target = `${__inbound.destinationAddress}:${__inbound.destinationPort}`,
    counts.outbound++,
    counts.outboundTargets[_target] = (counts.outboundTargets[_target] || 0) + 1,
    _target
  ))

// Rewritten HTTP probes: the kubelet's request with the original port and
// path in headers, replayed against the app on loopback.
.listen(15901).demuxHTTP().to('probe')
.listen(15902).demuxHTTP().to('probe')
.listen(15903).demuxHTTP().to('probe')

.pipeline('probe')
  .handleMessageStart(msg => (
    counts.health++,
    _target = `127.0.0.1:${msg.head.headers['original-http-port']}`,
    msg.head.path = msg.head.headers['original-http-path'] || '/'
  ))
  // One upstream session per target: muxHTTP's default key is the
  // inbound connection, which would send a kept-alive client's next
  // request to the port of its first.
  .muxHTTP(() => _target).to($ => $.connect(() => _target))

.listen(15010)
  .serveHTTP(() => new Message({ headers: { 'content-type': 'application/json' } }, JSON.stringify(counts)))

// Proxy admin (15000): the image's wait-pipy postStart (Pipy's
// tools/wait-pipy, and meshtool's stand-in) waits for a 200 on
// /config_dump, i.e. for the codebase to be running.
.listen(15000)
  .serveHTTP(msg => msg.head.path === '/config_dump'
    ? new Message({ headers: { 'content-type': 'application/json' } }, JSON.stringify({ codebase: counts.codebase }))
    : new Message({ status: 404 }, 'not found\n'))
