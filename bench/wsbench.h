/* Licensed under the Apache License, Version 2.0.
 *
 * wsbench.h: the WebSocket load generator of bench/ (see wsbench.c).
 */
#ifndef WSBENCH_H
#define WSBENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include <zlib.h>

enum { PROTO_RFC6455, PROTO_HIXIE76 };

enum conn_state {
    ST_IDLE,        /* not started yet */
    ST_CONNECTING,  /* TCP connect in progress */
    ST_TLS,         /* TLS handshake in progress */
    ST_HANDSHAKE,   /* upgrade request sent, waiting for the answer */
    ST_OPEN,        /* WebSocket open */
    ST_DONE         /* closed or failed */
};

typedef struct {
    const char *host;
    const char *port;
    const char *path;
    int tls;
    int proto;
    int conns;          /* N connections */
    int depth;          /* D messages in flight per connection */
    size_t size;        /* S bytes per message */
    double seconds;     /* T: measuring (or holding) time */
    int binary;         /* binary frames instead of text */
    int idle;           /* idle mode: open, hold, count */
    int smoke;          /* smoke mode: a few messages, exit status */
    int max_connecting; /* handshakes in progress at once */
    double timeout;     /* per connection handshake timeout, seconds */
    int verbose;
    int deflate;        /* -z: offer permessage-deflate, require it */
    int json;           /* -J: compressible JSON-like messages */
    int level;          /* -L: zlib level of the client's compressor */
    int fanout;         /* -F: connection 0 publishes, all receive */
    const char *pub_port;   /* -p: connection 0's port (default: URL's) */
} wsb_opts;

/* A byte buffer: data is buf[off, len). */
typedef struct {
    unsigned char *buf;
    size_t off, len, cap;
} wsb_buf;

typedef struct wsb_conn {
    int fd;
    SSL *ssl;
    enum conn_state state;
    uint64_t started;           /* ns, when connect() was called */
    wsb_buf out;                /* bytes waiting to be written */
    wsb_buf in;                 /* bytes read, not parsed yet */
    /* handshake */
    char accept[32];            /* expected Sec-WebSocket-Accept */
    unsigned char answer[16];   /* expected hixie-76 MD5 answer */
    /* messages: sent and fully echoed */
    uint64_t sent, echoed;
    uint64_t *sent_at;          /* ring of depth send times, ns */
    /* frame parser */
    int in_payload;             /* inside a frame (rfc) or message (hixie) */
    uint64_t frame_left;        /* payload bytes left in this frame */
    int frame_fin;              /* the last frame read was final */
    size_t msg_off;             /* bytes of the current message checked */
    uint32_t rng;               /* xorshift state for masks */
    /* permessage-deflate (-z), as the server answered */
    z_stream *zout, *zin;       /* the client's compressor, decompressor */
    int client_nct, server_nct; /* no context takeover, each direction */
    int msg_compressed;         /* RSV1 on the message being received */
    uint64_t msg_wire;          /* its frame bytes so far */
    uint32_t *sent_wire;        /* ring of depth: frame bytes sent */
} wsb_conn;

/* The run: options, connections and counters shared by all modules. */
typedef struct {
    wsb_opts o;
    int epfd;
    struct sockaddr_storage addr;   /* the server */
    socklen_t addrlen;
    struct sockaddr_storage pub_addr;   /* -F -p: the publisher's server */
    socklen_t pub_addrlen;
    SSL_CTX *ssl_ctx;
    wsb_conn *conns;
    unsigned char *pattern;     /* payload source, size + 256 bytes */
    size_t json_span;           /* -J: message starts spread over this */
    int running;                /* send messages (measuring phase) */
    uint64_t t_start, t_end;    /* measuring window, ns */
    uint64_t msgs, bytes;       /* echoed inside the window */
    uint64_t wire_in, wire_out; /* frame bytes read and written inside
                                 * the window (headers included) */
    uint64_t errors;            /* mismatches, unexpected closes */
    int n_open, n_failed, n_connecting, next_conn;
    int n_opened;               /* handshakes completed, ever */
    int n_echoed;               /* idle: connections that echoed */
    uint64_t smoke_goal;        /* smoke: messages per connection */
    uint64_t hist[64 * 64];     /* latency histogram, see wsb_stats.c */
    /* -F: messages published by connection 0, and fully delivered (to
     * every open connection); ring of depth: publish times, deliveries */
    uint64_t pub_sent, pub_done;
    uint64_t *pub_at;
    int *pub_got;
    int pub_wake;               /* a message is done: pump the publisher */
} wsb_run;

/* wsbench.c */
uint64_t wsb_now(void);
void wsb_fail(wsb_run *run, wsb_conn *c, const char *why);

/* wsb_net.c: sockets, TLS and the per connection pump */
int wsb_net_start(wsb_run *run, wsb_conn *c);
void wsb_net_event(wsb_run *run, wsb_conn *c);
void wsb_net_pump(wsb_run *run, wsb_conn *c);
void wsb_net_close(wsb_run *run, wsb_conn *c);
int wsb_net_flush(wsb_conn *c);
int wsb_buf_reserve(wsb_buf *b, size_t more);
/* Messages sent that c may receive: its own, or (-F) the publisher's. */
uint64_t wsb_sent_for(const wsb_run *run, const wsb_conn *c);

/* wsb_ws.c: handshake and framing */
int wsb_ws_request(wsb_run *run, wsb_conn *c);
int wsb_ws_response(wsb_run *run, wsb_conn *c);
int wsb_ws_send(wsb_run *run, wsb_conn *c);
int wsb_ws_parse(wsb_run *run, wsb_conn *c);
void wsb_ws_close(wsb_run *run, wsb_conn *c);
size_t wsb_msg_size(const wsb_run *run, uint64_t seq);

/* wsb_stats.c: latency histogram */
void wsb_hist_add(uint64_t *hist, uint64_t ns);
uint64_t wsb_hist_quantile(const uint64_t *hist, double q);

#endif
