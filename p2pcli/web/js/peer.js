// A thin adapter around RTCPeerConnection: one peer connection carrying one data channel
// (label "p2p", protocol "p2p/1"), trickle ICE, and back-pressure through bufferedAmount.
// It knows nothing of pieces or manifests. The browser counterpart of p2pcli/rtc.py.

import { CHANNEL_LABEL, CHANNEL_PROTOCOL } from './wire.js';

// Stop queueing data once this much waits in the channel; resume on bufferedamountlow.
export const HIGH_WATER = 2 * 1024 * 1024;
export const LOW_WATER = 512 * 1024;
// How long a channel announced already open may go without its 'open' event before we
// send anyway (Chromium fires it at once; this only guards a browser that never does).
export const OPEN_EVENT_WAIT = 1000;

export class PeerLink {
  /**
   * `events`: {candidate(c), open(), message(Uint8Array), low(), closed(reason)}.
   * Local candidates are held back until `startTrickle()`: the remote may only add
   * candidates once it has our description (aiortc drops earlier ones).
   */
  constructor(iceServers, events) {
    this.events = events;
    this.pc = new RTCPeerConnection({ iceServers });
    this.channel = null;
    this.closed = false;
    this.opened = false;
    this.remoteSet = false;
    this.trickling = false;
    this.localQueue = [];
    this.remoteQueue = [];
    // Messages sent before the channel's open event: they go out, in order, once it comes.
    // Chromium announces a remote channel reading 'open' before its 'open' event, and a
    // message sent in between can vanish (seen in CI and in loops: the remote's first
    // message from us was HAVE_ALL, our HANDSHAKE lost); it can also deliver the remote's
    // first message before that event (see Swarm.onMessage). What we send then (our
    // HANDSHAKE first) must not be lost, or the remote waits for a handshake forever.
    this.unsent = [];
    this.pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return; // end of candidates: nothing to send
      const c = {
        candidate: e.candidate.candidate,
        sdpMid: e.candidate.sdpMid,
        sdpMLineIndex: e.candidate.sdpMLineIndex,
      };
      if (this.trickling) this.events.candidate(c);
      else this.localQueue.push(c);
    };
    this.pc.onconnectionstatechange = () => {
      const state = this.pc.connectionState;
      if (state === 'failed') this.close('the WebRTC connection failed (no usable network path)');
      else if (state === 'closed') this.close('connection closed');
    };
  }

  /** Offerer: open the channel, return the offer ({type, sdp}). */
  async makeOffer() {
    this.attach(this.pc.createDataChannel(CHANNEL_LABEL, { ordered: true, protocol: CHANNEL_PROTOCOL }));
    await this.pc.setLocalDescription(await this.pc.createOffer());
    return { type: 'offer', sdp: this.pc.localDescription.sdp };
  }

  async acceptAnswer(answer) {
    await this.pc.setRemoteDescription(checkDescription(answer, 'answer'));
    await this.remoteReady();
    this.startTrickle();
  }

  /** Answerer: take the offer, return the answer; call startTrickle() once it is sent. */
  async answerOffer(offer) {
    this.pc.ondatachannel = (e) => {
      if (!this.channel && e.channel.label === CHANNEL_LABEL) this.attach(e.channel);
    };
    await this.pc.setRemoteDescription(checkDescription(offer, 'offer'));
    await this.remoteReady();
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    return { type: 'answer', sdp: this.pc.localDescription.sdp };
  }

  startTrickle() {
    this.trickling = true;
    const queued = this.localQueue;
    this.localQueue = [];
    for (const c of queued) this.events.candidate(c);
  }

  async remoteReady() {
    this.remoteSet = true;
    const queued = this.remoteQueue;
    this.remoteQueue = [];
    for (const c of queued) await this.addCandidate(c);
  }

  /** A trickled candidate from the remote; null or empty (end of candidates) is ignored. */
  async addCandidate(c) {
    if (!c || typeof c !== 'object' || !c.candidate) return;
    if (!this.remoteSet) {
      this.remoteQueue.push(c);
      return;
    }
    await this.pc.addIceCandidate({
      candidate: String(c.candidate),
      sdpMid: c.sdpMid ?? null,
      sdpMLineIndex: c.sdpMLineIndex ?? null,
    });
  }

  attach(channel) {
    this.channel = channel;
    channel.binaryType = 'arraybuffer';
    channel.bufferedAmountLowThreshold = LOW_WATER;
    // Chromium announces a remote channel already open and then fires 'open' as well:
    // report it once, at the event (nothing is sent before it, see `unsent`).
    const opened = () => {
      if (this.opened || this.closed) return;
      this.opened = true;
      const unsent = this.unsent;
      this.unsent = [];
      for (const bytes of unsent) if (!this.send(bytes)) return;
      this.events.open();
    };
    channel.onopen = opened;
    channel.onclose = () => this.close('data channel closed');
    channel.onbufferedamountlow = () => this.events.low();
    channel.onmessage = (e) => {
      if (typeof e.data === 'string') this.events.message(e.data);
      else this.events.message(new Uint8Array(e.data));
    };
    if (channel.readyState === 'open') setTimeout(opened, OPEN_EVENT_WAIT);
  }

  get open() {
    return !this.closed && this.channel !== null && this.channel.readyState === 'open';
  }

  get buffered() {
    return this.channel ? this.channel.bufferedAmount : 0;
  }

  /** Queue one message (held back until the channel opens); false when the channel is gone. */
  send(bytes) {
    if (this.closed || this.channel === null) return false;
    if (!this.opened && ['connecting', 'open'].includes(this.channel.readyState)) {
      this.unsent.push(bytes); // until the open event, in order: the order is the protocol's
      return true;
    }
    if (!this.open) return false;
    try {
      this.channel.send(bytes);
      return true;
    } catch (e) {
      this.close(`send failed: ${e.message}`);
      return false;
    }
  }

  /** 'host', 'srflx', 'prflx' or 'relay' for our side of the pair in use, if known. */
  async connectionKind() {
    try {
      const stats = await this.pc.getStats();
      let pair = null;
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      });
      if (!pair) {
        stats.forEach((s) => {
          if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
        });
      }
      const local = pair && stats.get(pair.localCandidateId);
      return local ? local.candidateType : null;
    } catch {
      return null;
    }
  }

  close(reason = 'closed') {
    if (this.closed) return;
    this.closed = true;
    try {
      this.pc.close();
    } catch {
      // already closed
    }
    this.events.closed(reason);
  }
}

function checkDescription(d, expected) {
  if (!d || typeof d !== 'object' || d.type !== expected || typeof d.sdp !== 'string') {
    throw new Error(`malformed ${expected} description`);
  }
  return { type: d.type, sdp: d.sdp };
}
