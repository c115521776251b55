package WSTest;

# Helpers for the mod_websocket end-to-end tests: raw client sockets
# (plain or TLS) against the Apache::Test server, byte-exact request
# writing, response-head and frame reading with timeouts, the draft
# (hixie-75/76) framing, RFC 6455 client framing, and error_log marks.
#
# Everything works on byte strings: pass UTF-8 *encoded* text
# (Encode::encode('UTF-8', $str)) and compare with encoded bytes.
#
#   my $c = WSTest->connect;                       # main server (ws://)
#   my $s = WSTest->connect(ssl => 1);             # mod_ssl vhost (wss://)
#   $c->send($bytes);                              # one write
#   $c->send_bytewise($bytes, 0.001);              # one write per byte
#   $c->send_pieces([$a, $b], 0.3);                # writes with pauses
#   my $head = $c->read_head(5);                   # up to CRLFCRLF (incl.)
#   my $more = $c->read_bytes(16, 5);              # exactly 16 (or fewer on
#                                                  #  EOF/timeout)
#   $c->read_hixie_frame(5);  $c->read_ws_frame(5); $c->wait_eof(5);
#
# Read functions never die on a timeout or EOF: they return what they got
# (undef when nothing complete) and set $c->{eof} / $c->{timed_out}.

use strict;
use warnings;

use Carp qw(croak);
use Digest::MD5 ();
use Digest::SHA ();
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use IO::Select ();
use IO::Socket::INET ();
use MIME::Base64 ();
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes ();

use Apache::Test ();
use Apache::TestConfig ();

use Exporter 'import';
our @EXPORT_OK = qw(
    parse_head header hexdump
    hixie_text_frame hixie_length_frame hixie_close_frame hixie_varint
    hixie76_key hixie76_answer hixie76_request hixie75_request
    ws_frame ws_text ws_binary ws_close ws_ping ws_pong ws_continuation
    ws_parse_frame ws_mask ws_close_payload ws_parse_close
    ws_client_key ws_accept rfc6455_request
    error_log_path error_log_mark error_log_since error_log_wait crash_lines
    forensic_read forensic_ended
    server_hostport httpd_parent_pid send_expecting_status
    loaded_module httpd_config_test
    module_httpd
    children server_child rss_kb fd_count snapshot rss_growth fd_growth
    describe
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our $DEFAULT_TIMEOUT = 10;

# ----------------------------------------------------------------------
# where the test server listens

# server_hostport()           -> ("localhost", 8529)   main server
# server_hostport('mod_ssl')  -> ("localhost", 8530)   TLS vhost
sub server_hostport {
    my $vhost = shift;
    my $cfg = Apache::Test::config();
    my ($host, $port);
    if ($vhost) {
        my $vh = $cfg->{vhosts}{$vhost}
            or croak "no vhost '$vhost' in the Apache::Test config";
        $port = $vh->{port};
        $host = $vh->{servername} || $cfg->{vars}{servername};
    }
    else {
        $port = $cfg->{vars}{port};
        $host = $cfg->{vars}{servername};
    }
    $host ||= 'localhost';
    return ($host, $port);
}

# ----------------------------------------------------------------------
# connections

# WSTest->connect(%opt)
#   ssl => 1          TLS to the mod_ssl vhost (certificate not verified)
#   vhost => 'name'   Apache::Test vhost to use (default main / mod_ssl)
#   host, port        override
#   timeout           connect timeout (default 10 s)
#   nodelay           TCP_NODELAY (default on)
# Returns the connection object or undef (with $@ set).
sub connect {
    my ($class, %opt) = @_;
    my $vhost = $opt{vhost} || ($opt{ssl} ? 'mod_ssl' : undef);
    my ($host, $port) = server_hostport($vhost);
    $host = $opt{host} if defined $opt{host};
    $port = $opt{port} if defined $opt{port};
    my $timeout = $opt{timeout} || $DEFAULT_TIMEOUT;

    my $sock = IO::Socket::INET->new(
        PeerAddr => $host,
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => $timeout,
    );
    unless ($sock) {
        $@ = "connect to $host:$port failed: $!";
        return undef;
    }
    binmode $sock;
    if (!exists $opt{nodelay} || $opt{nodelay}) {
        setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    }
    my $self = bless {
        sock => $sock, buf => '', host => $host, port => $port,
        ssl => 0, eof => 0, timed_out => 0,
    }, $class;

    if ($opt{ssl}) {
        require IO::Socket::SSL;
        my $ok = IO::Socket::SSL->start_SSL($sock,
            SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE(),
            SSL_hostname    => $host,
            Timeout         => $timeout,
        );
        unless ($ok) {
            $@ = "TLS handshake with $host:$port failed: "
               . IO::Socket::SSL::errstr();
            return undef;
        }
        $self->{ssl} = 1;
    }
    return $self;
}

sub sock { $_[0]{sock} }
sub host { $_[0]{host} }
sub port { $_[0]{port} }
sub hostport { "$_[0]{host}:$_[0]{port}" }
sub is_ssl { $_[0]{ssl} }

# bytes received but not consumed yet
sub buffered { $_[0]{buf} }

# write all of $bytes (one or more write calls); returns true on success
sub send {
    my ($self, $bytes) = @_;
    my $sock = $self->{sock} or return 0;
    my $off = 0;
    my $len = length $bytes;
    croak "send: wide character (encode text to UTF-8 first)"
        if utf8::is_utf8($bytes) && $bytes =~ /[^\x00-\xff]/;
    local $SIG{PIPE} = 'IGNORE';
    while ($off < $len) {
        my $n = syswrite($sock, $bytes, $len - $off, $off);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $self->{write_error} = "$!";
            return 0;
        }
        $off += $n;
    }
    return 1;
}

# one write per byte, optionally sleeping $delay seconds between them
sub send_bytewise {
    my ($self, $bytes, $delay) = @_;
    for my $i (0 .. length($bytes) - 1) {
        $self->send(substr $bytes, $i, 1) or return 0;
        Time::HiRes::sleep($delay) if $delay && $i < length($bytes) - 1;
    }
    return 1;
}

# send each element of @$pieces in its own write, sleeping $delay seconds
# (or $delay->[$i] seconds) between them
sub send_pieces {
    my ($self, $pieces, $delay) = @_;
    for my $i (0 .. $#$pieces) {
        $self->send($pieces->[$i]) or return 0;
        if ($i < $#$pieces) {
            my $d = ref $delay ? $delay->[$i] : $delay;
            Time::HiRes::sleep($d) if $d;
        }
    }
    return 1;
}

# read more data into the buffer: waits at most until $deadline (absolute
# time).  Returns number of bytes added, 0 on EOF, undef on timeout/error.
sub _fill {
    my ($self, $deadline) = @_;
    my $sock = $self->{sock};
    return 0 if $self->{eof};
    while (1) {
        my $pending = $self->{ssl} ? $sock->pending : 0;
        unless ($pending) {
            my $left = $deadline - Time::HiRes::time();
            if ($left <= 0) { $self->{timed_out} = 1; return undef; }
            my $sel = IO::Select->new($sock);
            my @r = $sel->can_read($left);
            unless (@r) {
                next if $! == EINTR && Time::HiRes::time() < $deadline;
                $self->{timed_out} = 1;
                return undef;
            }
        }
        my $chunk = '';
        my $n = sysread($sock, $chunk, 65536);
        if (!defined $n) {
            if ($self->{ssl}) {
                # IO::Socket::SSL: no full record yet
                next if $! == EAGAIN || $! == EWOULDBLOCK
                    || ($IO::Socket::SSL::SSL_ERROR
                        && $IO::Socket::SSL::SSL_ERROR
                           == IO::Socket::SSL::SSL_WANT_READ());
            }
            next if $! == EINTR || $! == EAGAIN;
            # ECONNRESET and friends: treat as end of stream
            $self->{read_error} = "$!";
            $self->{eof} = 1;
            return 0;
        }
        if ($n == 0) { $self->{eof} = 1; return 0; }
        $self->{buf} .= $chunk;
        return $n;
    }
}

sub _deadline {
    my $t = shift;
    return Time::HiRes::time() + (defined $t ? $t : $DEFAULT_TIMEOUT);
}

# Response head up to and including the first CRLFCRLF; undef when EOF or
# the timeout comes first (then ->buffered holds what did arrive).
sub read_head {
    my ($self, $timeout) = @_;
    my $deadline = _deadline($timeout);
    $self->{timed_out} = 0;
    while (1) {
        my $i = index $self->{buf}, "\r\n\r\n";
        if ($i >= 0) {
            return substr $self->{buf}, 0, $i + 4, '';
        }
        my $n = $self->_fill($deadline);
        return undef unless $n;
    }
}

# Exactly $n bytes; on EOF/timeout returns the (shorter) bytes that came,
# which may be ''.
sub read_bytes {
    my ($self, $n, $timeout) = @_;
    my $deadline = _deadline($timeout);
    $self->{timed_out} = 0;
    while (length $self->{buf} < $n) {
        my $r = $self->_fill($deadline);
        last unless $r;
    }
    my $take = length $self->{buf} < $n ? length $self->{buf} : $n;
    return substr $self->{buf}, 0, $take, '';
}

# Everything up to and including $marker; undef on EOF/timeout first.
sub read_until {
    my ($self, $marker, $timeout) = @_;
    my $deadline = _deadline($timeout);
    $self->{timed_out} = 0;
    while (1) {
        my $i = index $self->{buf}, $marker;
        return substr $self->{buf}, 0, $i + length $marker, '' if $i >= 0;
        my $r = $self->_fill($deadline);
        return undef unless $r;
    }
}

# Whatever arrives within $timeout (or until EOF), consumed.  A timeout
# of 0 returns only what was already buffered: pass a small one (0.05) to
# look at the socket.
sub read_available {
    my ($self, $timeout) = @_;
    my $deadline = _deadline($timeout);
    $self->{timed_out} = 0;
    1 while $self->_fill($deadline);
    my $all = $self->{buf};
    $self->{buf} = '';
    return $all;
}

# Waits for the peer to close.  Returns true on EOF within $timeout; the
# bytes received meanwhile are in $self->{trailing} (and consumed).
sub wait_eof {
    my ($self, $timeout) = @_;
    my $deadline = _deadline($timeout);
    $self->{timed_out} = 0;
    my $got = '';
    while (!$self->{eof}) {
        my $r = $self->_fill($deadline);
        last unless defined $r;
    }
    $self->{trailing} = $self->{buf};
    $self->{buf} = '';
    return $self->{eof} ? 1 : 0;
}

sub eof { $_[0]{eof} }
sub timed_out { $_[0]{timed_out} }

sub shutdown_write {
    my $self = shift;
    if ($self->{ssl}) { $self->{sock}->stop_SSL(SSL_fast_shutdown => 1) }
    shutdown($self->{sock}, 1);
}

sub close {
    my $self = shift;
    if (my $s = delete $self->{sock}) {
        $s->close(SSL_no_shutdown => 1) if $self->{ssl};
        CORE::close($s) unless $self->{ssl};
    }
}

sub DESTROY { $_[0]->close }

# ----------------------------------------------------------------------
# HTTP response heads

# parse_head($head) -> { proto, status, reason, status_line,
#                        headers => { lc name => [values] },
#                        fields => [[name, value], ...] } or undef
sub parse_head {
    my $head = shift;
    return undef unless defined $head;
    my @lines = split /\r\n/, $head;
    my $sl = shift @lines;
    return undef unless defined $sl
        && $sl =~ m{^(HTTP/\d\.\d) (\d{3})(?: (.*))?$};
    my %r = (proto => $1, status => $2, reason => defined $3 ? $3 : '',
             status_line => $sl, headers => {}, fields => []);
    for (@lines) {
        next if $_ eq '';
        my ($k, $v) = /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        push @{ $r{fields} }, [$k, $v];
        push @{ $r{headers}{lc $k} }, $v;
    }
    return \%r;
}

# header($parsed, 'Name') -> all values joined with ", " (undef if absent)
sub header {
    my ($r, $name) = @_;
    my $v = $r->{headers}{lc $name} or return undef;
    return join ', ', @$v;
}

# readable rendering of bytes for test diagnostics
sub hexdump {
    my ($bytes, $max) = @_;
    return '(undef)' unless defined $bytes;
    $max ||= 256;
    my $s = substr $bytes, 0, $max;
    $s =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ge;
    $s .= sprintf '... (%d bytes)', length $bytes if length $bytes > $max;
    return qq("$s");
}

# ----------------------------------------------------------------------
# draft-hixie-thewebsocketprotocol-75/76

sub hixie_text_frame { "\x00" . $_[0] . "\xFF" }

# length as the draft encodes it: base-128, most significant group first,
# high bit set on all but the last byte
sub hixie_varint {
    my $n = shift;
    my @b = ($n & 0x7f);
    $n >>= 7;
    while ($n) {
        unshift @b, 0x80 | ($n & 0x7f);
        $n >>= 7;
    }
    return pack 'C*', @b;
}

# length-prefixed frame (frame type >= 0x80; 0xFF with length 0 is close)
sub hixie_length_frame {
    my ($data, $type) = @_;
    $type = 0x80 unless defined $type;
    return chr($type) . hixie_varint(length $data) . $data;
}

sub hixie_close_frame { "\xFF\x00" }

# Reads one server frame.  Returns { type, data } where for a text frame
# (type < 0x80) data is the bytes between the type and 0xFF, for a
# length-prefixed frame the payload (a close is type 0xFF, data '').
# undef on EOF/timeout before a whole frame.
sub read_hixie_frame {
    my ($self, $timeout) = @_;
    my $deadline = _deadline($timeout);
    $self->{timed_out} = 0;
    while (1) {
        my $f = _parse_hixie_frame(\$self->{buf});
        return $f if $f;
        my $r = $self->_fill($deadline);
        return undef unless $r;
    }
}

sub _parse_hixie_frame {
    my $bufref = shift;
    my $buf = $$bufref;
    return undef unless length $buf;
    my $type = ord substr $buf, 0, 1;
    if ($type & 0x80) {
        my ($len, $i) = (0, 1);
        while (1) {
            return undef if $i >= length $buf;
            my $b = ord substr $buf, $i++, 1;
            $len = $len * 128 + ($b & 0x7f);
            last unless $b & 0x80;
        }
        return undef if length($buf) < $i + $len;
        my $data = substr $buf, $i, $len;
        substr($$bufref, 0, $i + $len, '');
        return { type => $type, data => $data, length => $len };
    }
    my $end = index $buf, "\xFF", 1;
    return undef if $end < 0;
    my $data = substr $buf, 1, $end - 1;
    substr($$bufref, 0, $end + 1, '');
    return { type => $type, data => $data };
}

# hixie76_key($number, $spaces) -> a Sec-WebSocket-Key value whose digits
# make $number * $spaces and which holds $spaces spaces (neither at the
# start nor at the end), with a few random non-digit characters mixed in.
# hixie76_key() picks both at random (valid).
sub hixie76_key {
    my ($number, $spaces) = @_;
    $spaces = 1 + int rand 12 unless defined $spaces;
    $number = int rand(4294967295 / $spaces) unless defined $number;
    my @c = split //, '' . ($number * $spaces);
    my @noise = map { chr } 0x21 .. 0x2f, 0x3a .. 0x7e;
    for (1 .. 1 + int rand 12) {
        splice @c, int rand(@c + 1), 0, $noise[rand @noise];
    }
    for (1 .. $spaces) {
        splice @c, 1 + int rand(@c - 1), 0, ' ';
    }
    return join '', @c;
}

# the 16-byte answer: MD5(be32(key1 digits / spaces) . be32(key2 ...) . key3)
sub hixie76_answer {
    my ($k1, $k2, $key3) = @_;
    my @n;
    for my $k ($k1, $k2) {
        (my $d = $k) =~ s/\D//g;
        $d = 0 if $d eq '';
        my $sp = () = $k =~ / /g;
        croak "key '$k' has no spaces" unless $sp;
        push @n, int($d / $sp);
    }
    return Digest::MD5::md5(pack('NN', @n) . $key3);
}

# hixie76_request(%opt) -> request bytes (head + the 8 key bytes unless
# key3 => undef).  Options: path (/echo), host (Host header; none if undef),
# origin (default http://<host>, https:// with ssl => 1), protocol, key1, key2, key3, method (GET),
# version (HTTP/1.1), extra => [[name, value], ...], omit => [names],
# order => [names] to reorder.  Returns (bytes, \%used) in list context,
# where %used holds key1, key2, key3, expected answer.
sub hixie76_request {
    my (%o) = @_;
    my $key1 = exists $o{key1} ? $o{key1} : hixie76_key();
    my $key2 = exists $o{key2} ? $o{key2} : hixie76_key();
    my $key3 = exists $o{key3} ? $o{key3}
             : pack 'C8', map { int rand 256 } 1 .. 8;
    my @fields = (
        ['Host', $o{host}],
        ['Connection', 'Upgrade'],
        ['Sec-WebSocket-Key2', $key2],
        (defined $o{protocol} ? ['Sec-WebSocket-Protocol', $o{protocol}] : ()),
        ['Upgrade', 'WebSocket'],
        ['Sec-WebSocket-Key1', $key1],
        ['Origin', exists $o{origin} ? $o{origin} : _default_origin(\%o)],
    );
    my $req = _request_head(\%o, \@fields);
    $req .= $key3 if defined $key3;
    my %used = (key1 => $key1, key2 => $key2, key3 => $key3);
    $used{answer} = hixie76_answer($key1, $key2, $key3)
        if defined $key1 && defined $key2 && defined $key3
           && $key1 =~ / / && $key2 =~ / /;
    return wantarray ? ($req, \%used) : $req;
}

# hixie75_request(%opt): Upgrade: WebSocket, Connection: Upgrade, Host,
# Origin (+ WebSocket-Protocol with protocol => ...)
sub hixie75_request {
    my (%o) = @_;
    my @fields = (
        ['Upgrade', 'WebSocket'],
        ['Connection', 'Upgrade'],
        ['Host', $o{host}],
        ['Origin', exists $o{origin} ? $o{origin} : _default_origin(\%o)],
        (defined $o{protocol} ? ['WebSocket-Protocol', $o{protocol}] : ()),
    );
    return _request_head(\%o, \@fields);
}

# the module checks by default that Origin names the Host the request was
# sent to: default to http(s)://<Host header>
sub _default_origin {
    my $o = shift;
    my $host = defined $o->{host} ? $o->{host} : 'localhost';
    return ($o->{ssl} ? 'https://' : 'http://') . $host;
}

sub _request_head {
    my ($o, $fields) = @_;
    my $method  = $o->{method}  || 'GET';
    my $path    = $o->{path}    || '/echo';
    my $version = $o->{version} || 'HTTP/1.1';
    my %omit = map { lc($_) => 1 } @{ $o->{omit} || [] };
    my @f = grep { !$omit{ lc $_->[0] } && defined $_->[1] } @$fields;
    push @f, @{ $o->{extra} || [] };
    if (my $order = $o->{order}) {
        my %pos; @pos{ map lc, @$order } = 0 .. $#$order;
        @f = sort { ($pos{lc $a->[0]} // 1e9) <=> ($pos{lc $b->[0]} // 1e9) } @f;
    }
    my $req = "$method $path $version\r\n";
    $req .= "$_->[0]: $_->[1]\r\n" for @f;
    return $req . "\r\n";
}

# $c->handshake76(%opt): sends a hixie-76 request (hixie76_request options;
# host defaults to the connection's host:port, ssl to the connection's) in
# one write, or as pieces => [head, key3] with delay => seconds, or
# bytewise => 1; reads the response head and, when it is a 101, the 16-byte
# answer.  Returns a hash: head (raw), res (parse_head), answer (16 bytes
# or fewer), expected (the answer we computed), request, used.
sub handshake76 {
    my ($self, %o) = @_;
    $o{host} = $self->hostport unless exists $o{host};
    $o{ssl} = $self->{ssl} unless exists $o{ssl};
    my ($req, $used) = hixie76_request(%o);
    if ($o{bytewise}) {
        $self->send_bytewise($req, $o{delay});
    }
    elsif ($o{split_key3} && defined $used->{key3}) {
        my $k = length $used->{key3};
        $self->send_pieces([substr($req, 0, -$k), substr($req, -$k)],
                           $o{delay});
    }
    else {
        $self->send($req);
    }
    my %r = (request => $req, used => $used, expected => $used->{answer});
    $r{head} = $self->read_head($o{timeout});
    $r{res} = parse_head($r{head});
    if ($r{res} && $r{res}{status} == 101) {
        $r{answer} = $self->read_bytes(16, $o{timeout});
    }
    return \%r;
}

# $c->handshake75(%opt): hixie-75 request, returns { head, res, request }
sub handshake75 {
    my ($self, %o) = @_;
    $o{host} = $self->hostport unless exists $o{host};
    $o{ssl} = $self->{ssl} unless exists $o{ssl};
    my $req = hixie75_request(%o);
    $self->send($req);
    my $head = $self->read_head($o{timeout});
    return { head => $head, res => parse_head($head), request => $req };
}

# $c->hixie_echo($bytes): sends one text frame, returns the data of the
# next frame received (undef if none)
sub hixie_echo {
    my ($self, $bytes, $timeout) = @_;
    $self->send(hixie_text_frame($bytes)) or return undef;
    my $f = $self->read_hixie_frame($timeout) or return undef;
    return $f->{data};
}

# ----------------------------------------------------------------------
# RFC 6455

use constant {
    OP_CONT => 0x0, OP_TEXT => 0x1, OP_BINARY => 0x2,
    OP_CLOSE => 0x8, OP_PING => 0x9, OP_PONG => 0xA,
};
push @EXPORT_OK, qw(OP_CONT OP_TEXT OP_BINARY OP_CLOSE OP_PING OP_PONG);

# XOR $data with the 4-byte $key
sub ws_mask {
    my ($data, $key) = @_;
    return '' unless length $data;
    my $reps = int(length($data) / 4) + 1;
    return $data ^ substr($key x $reps, 0, length $data);
}

# ws_frame($opcode, $payload, %opt) -> frame bytes
#   fin => 1|0            (default 1)
#   rsv => 0..7           RSV1 = 4, RSV2 = 2, RSV3 = 1 (default 0)
#   mask => 1|0           client frames are masked (default 1)
#   mask_key => 4 bytes   default random
#   len_bits => 7|16|64   force a length encoding (default the minimal
#                         one), e.g. a non-minimal 64-bit length
#   len => N              length to put in the header instead of the
#                         payload's (for lying-length tests)
sub ws_frame {
    my ($opcode, $payload, %o) = @_;
    $payload = '' unless defined $payload;
    croak "ws_frame: wide character (encode text to UTF-8 first)"
        if utf8::is_utf8($payload) && $payload =~ /[^\x00-\xff]/;
    my $fin  = exists $o{fin} ? ($o{fin} ? 1 : 0) : 1;
    my $rsv  = $o{rsv} || 0;
    my $mask = exists $o{mask} ? ($o{mask} ? 1 : 0) : 1;
    my $len  = defined $o{len} ? $o{len} : length $payload;

    my $b0 = ($fin << 7) | (($rsv & 7) << 4) | ($opcode & 0x0f);
    my $bits = $o{len_bits}
        || ($len < 126 ? 7 : $len < 65536 ? 16 : 64);
    my $hdr = chr $b0;
    my $m = $mask << 7;
    if ($bits == 7) {
        croak "length $len does not fit 7 bits" if $len > 125;
        $hdr .= chr($m | $len);
    }
    elsif ($bits == 16) {
        croak "length $len does not fit 16 bits" if $len > 65535;
        $hdr .= chr($m | 126) . pack('n', $len);
    }
    elsif ($bits == 64) {
        $hdr .= chr($m | 127) . pack('NN', int($len / 4294967296), $len % 4294967296);
    }
    else { croak "len_bits must be 7, 16 or 64" }

    if ($mask) {
        my $key = defined $o{mask_key} ? $o{mask_key}
                : pack 'C4', map { int rand 256 } 1 .. 4;
        croak "mask_key must be 4 bytes" unless length $key == 4;
        return $hdr . $key . ws_mask($payload, $key);
    }
    return $hdr . $payload;
}

sub ws_text         { ws_frame(OP_TEXT,   @_) }
sub ws_binary       { ws_frame(OP_BINARY, @_) }
sub ws_continuation { ws_frame(OP_CONT,   @_) }
sub ws_ping         { ws_frame(OP_PING,   @_) }
sub ws_pong         { ws_frame(OP_PONG,   @_) }

# close payload: 2-byte code + UTF-8 reason ('' when code is undef)
sub ws_close_payload {
    my ($code, $reason) = @_;
    return '' unless defined $code;
    return pack('n', $code) . (defined $reason ? $reason : '');
}

# ws_close($code, $reason, %frame_opts)
sub ws_close {
    my ($code, $reason, %o) = @_;
    return ws_frame(OP_CLOSE, ws_close_payload($code, $reason), %o);
}

# (code, reason) from a close payload; code undef when the payload is empty
sub ws_parse_close {
    my $p = shift;
    return (undef, '') if !defined $p || length($p) < 2;
    return (unpack('n', $p), substr($p, 2));
}

# ws_parse_frame(\$buf) -> frame hash, consuming it from $buf; undef when
# $buf does not hold a whole frame yet.  Frame hash: fin, rsv (0..7), rsv1,
# rsv2, rsv3, opcode, masked, mask_key, length, len_bits, payload (unmasked),
# header_length, raw.
sub ws_parse_frame {
    my $bufref = shift;
    my $buf = $$bufref;
    return undef if length $buf < 2;
    my ($b0, $b1) = unpack 'CC', $buf;
    my $masked = $b1 >> 7;
    my $len = $b1 & 0x7f;
    my $i = 2;
    my $bits = 7;
    if ($len == 126) {
        return undef if length $buf < 4;
        $len = unpack 'n', substr $buf, 2, 2;
        $i = 4; $bits = 16;
    }
    elsif ($len == 127) {
        return undef if length $buf < 10;
        my ($hi, $lo) = unpack 'NN', substr $buf, 2, 8;
        $len = $hi * 4294967296 + $lo;
        $i = 10; $bits = 64;
    }
    my $key;
    if ($masked) {
        return undef if length $buf < $i + 4;
        $key = substr $buf, $i, 4;
        $i += 4;
    }
    return undef if length($buf) < $i + $len;
    my $payload = substr $buf, $i, $len;
    $payload = ws_mask($payload, $key) if $masked;
    my $raw = substr $$bufref, 0, $i + $len, '';
    return {
        fin => $b0 >> 7, rsv => ($b0 >> 4) & 7,
        rsv1 => ($b0 >> 6) & 1, rsv2 => ($b0 >> 5) & 1, rsv3 => ($b0 >> 4) & 1,
        opcode => $b0 & 0x0f, masked => $masked, mask_key => $key,
        length => $len, len_bits => $bits, payload => $payload,
        header_length => $i, raw => $raw,
    };
}

# one server frame (undef on EOF/timeout before a whole frame)
sub read_ws_frame {
    my ($self, $timeout) = @_;
    my $deadline = _deadline($timeout);
    $self->{timed_out} = 0;
    while (1) {
        my $f = ws_parse_frame(\$self->{buf});
        return $f if $f;
        my $r = $self->_fill($deadline);
        return undef unless $r;
    }
}

# A whole message: data frames up to FIN, collecting control frames that
# arrive in between into $msg->{control} (they are not answered).  Returns
# { opcode, payload, frames => [...], control => [...] }; a control frame
# arriving on its own (not inside a fragmented message) is returned as the
# message (opcode 8/9/10).  undef on EOF/timeout.
sub read_ws_message {
    my ($self, $timeout) = @_;
    my $deadline = _deadline($timeout);
    my (%msg, @frames, @control);
    while (1) {
        my $f = $self->read_ws_frame($deadline - Time::HiRes::time());
        return undef unless $f;
        if ($f->{opcode} >= 8) {
            return { %$f, frames => [$f], control => [] } unless @frames;
            push @control, $f;
            next;
        }
        push @frames, $f;
        last if $f->{fin};
    }
    return {
        opcode  => $frames[0]{opcode},
        payload => join('', map { $_->{payload} } @frames),
        frames  => \@frames,
        control => \@control,
    };
}

# random 16-byte nonce, base64 (Sec-WebSocket-Key)
sub ws_client_key {
    return MIME::Base64::encode_base64(pack('C16', map { int rand 256 } 1 .. 16), '');
}

# Sec-WebSocket-Accept for a key
sub ws_accept {
    my $key = shift;
    return MIME::Base64::encode_base64(
        Digest::SHA::sha1($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), '');
}

# rfc6455_request(%opt) -> request head (and \%used with key, accept in list
# context).  Options as hixie76_request plus: key, version (13; the
# Sec-WebSocket-Version value), protocol, extensions, origin (default none),
# http (HTTP/1.1).
sub rfc6455_request {
    my (%o) = @_;
    my $key = exists $o{key} ? $o{key} : ws_client_key();
    my @fields = (
        ['Host', $o{host}],
        ['Upgrade', exists $o{upgrade} ? $o{upgrade} : 'websocket'],
        ['Connection', exists $o{connection} ? $o{connection} : 'Upgrade'],
        ['Sec-WebSocket-Key', $key],
        ['Sec-WebSocket-Version', exists $o{ws_version} ? $o{ws_version} : 13],
        (defined $o{origin} ? ['Origin', $o{origin}] : ()),
        (defined $o{protocol} ? ['Sec-WebSocket-Protocol', $o{protocol}] : ()),
        (defined $o{extensions} ? ['Sec-WebSocket-Extensions', $o{extensions}] : ()),
    );
    my %ro = %o;
    $ro{version} = $o{http} || 'HTTP/1.1';
    my $req = _request_head(\%ro, \@fields);
    my %used = (key => $key, accept => defined $key ? ws_accept($key) : undef);
    return wantarray ? ($req, \%used) : $req;
}

# ----------------------------------------------------------------------
# the httpd children, from /proc (memory and descriptor leaks)

# pids of the test server's children (or of the httpd whose parent is
# $ppid)
sub children {
    my $pp = shift // httpd_parent_pid() or return;
    my @kids;
    opendir my $d, '/proc' or return;
    for my $pid (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my $stat = <$fh> // next;
        push @kids, $pid if $stat =~ /\) \S+ (\d+) / && $1 == $pp;
    }
    return sort { $a <=> $b } @kids;
}

# server_child($c) -> pid of the httpd child that holds the server's end of
# the connection $c (found through /proc/net/tcp* and the children's
# descriptors), or undef; $ppid: of that httpd instead of the test server
sub server_child {
    my ($c, $ppid) = @_;
    local $_;
    my ($cport, $sport) = ($c->sock->sockport, $c->sock->peerport);
    my $inode;
    for my $table ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $table or next;
        while (<$fh>) {
            my @f = split;
            next unless @f > 9 && $f[1] =~ /:([0-9A-F]+)$/ && hex $1 == $sport
                && $f[2] =~ /:([0-9A-F]+)$/ && hex $1 == $cport;
            $inode = $f[9];
            last;
        }
        last if $inode;
    }
    return unless $inode;
    for my $pid (children($ppid)) {
        opendir my $d, "/proc/$pid/fd" or next;
        for my $fd (readdir $d) {
            my $target = readlink "/proc/$pid/fd/$fd";
            return $pid if defined $target && $target eq "socket:[$inode]";
        }
    }
    return;
}

# VmRSS of $pid in kB, or undef
sub rss_kb {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/status" or return;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return;
}

# open descriptors of $pid, or undef
sub fd_count {
    my $pid = shift;
    opendir my $d, "/proc/$pid/fd" or return;
    return scalar grep { !/^\./ } readdir $d;
}

# { pid => { rss => kB, fd => n } } for every child that can be read
sub snapshot {
    my %s;
    for my $pid (children()) {
        my ($rss, $fd) = (rss_kb($pid), fd_count($pid));
        $s{$pid} = { rss => $rss, fd => $fd } if defined $rss && defined $fd;
    }
    return \%s;
}

# Largest growth of $key (rss or fd) of a child present in both snapshots;
# a child born in between is compared with the largest child of the first.
sub _growth {
    my ($key, $before, $after) = @_;
    my ($max_before) = sort { $b <=> $a } map { $_->{$key} } values %$before;
    $max_before //= 0;
    my $worst = 0;
    for my $pid (keys %$after) {
        my $base = $before->{$pid} ? $before->{$pid}{$key} : $max_before;
        my $g = $after->{$pid}{$key} - $base;
        $worst = $g if $g > $worst;
    }
    return $worst;
}

# rss_growth($before, $after) -> kB;  fd_growth($before, $after) -> fds
sub rss_growth { _growth('rss', @_) }
sub fd_growth  { _growth('fd', @_) }

# a snapshot as text, for diagnostics
sub describe {
    my $s = shift;
    return join ', ', map { "$_: $s->{$_}{rss} kB, $s->{$_}{fd} fds" }
                      sort { $a <=> $b } keys %$s;
}

# ----------------------------------------------------------------------
# error_log

sub error_log_path {
    return Apache::Test::vars('t_logs') . '/error_log';
}

# Send the raw request $req on a new connection and check the answer's
# status is $status (one test, named "$name: $status", with the request and
# response dumped on failure).  Returns ($conn, $parsed_head, $raw_head).
sub send_expecting_status {
    my ($req, $status, $name) = @_;
    my $c = WSTest->connect;
    $c->send($req);
    my $head = $c->read_head(5);
    my $res = parse_head($head);
    Test::More::is($res && $res->{status}, $status, "$name: $status")
        or Test::More::diag('request: ' . hexdump($req, 600) . "\nresponse: "
                            . hexdump(defined $head ? $head : $c->buffered, 600));
    return ($c, $res, $head);
}

# ----------------------------------------------------------------------
# private configurations

# loaded_module('mpm_event_module') -> the file the Apache::Test
# configuration loads that module from, else Debian's
# /usr/lib/apache2/modules/mod_mpm_event.so
sub loaded_module {
    my $name = shift;
    my $conf = Apache::Test::vars('serverroot') . '/conf/httpd.conf';
    if (open my $fh, '<', $conf) {
        while (<$fh>) {
            return $1 if /LoadModule\s+\Q$name\E\s+"?([^"\s]+)/;
        }
    }
    (my $file = $name) =~ s/_module$//;
    return "/usr/lib/apache2/modules/mod_$file.so";
}

# httpd_config_test($dir, $body) -> ($wait_status, $output) of "httpd -t"
# on a minimal configuration in $dir (created if need be) that loads
# mpm_event and the built mod_websocket, followed by $body.
sub httpd_config_test {
    my ($dir, $body) = @_;
    my $serverroot = Apache::Test::vars('serverroot');
    my $module = "$serverroot/../.libs/mod_websocket.so";
    my $mpm = loaded_module('mpm_event_module');
    mkdir $dir;
    open my $fh, '>', "$dir/httpd.conf" or croak "$dir/httpd.conf: $!";
    print $fh <<"CONF";
ServerRoot "$dir"
ServerName 127.0.0.1
Listen 127.0.0.1:1
PidFile "$dir/httpd.pid"
ErrorLog "$dir/error_log"
LoadModule mpm_event_module "$mpm"
LoadModule websocket_module "$module"
$body
CONF
    CORE::close $fh;
    my $httpd = Apache::Test::vars('httpd');
    my $out = `"$httpd" -t -d "$dir" -f "$dir/httpd.conf" 2>&1`;
    return ($?, $out);
}

# module_httpd($name, $body) -> { pid, port, dir, stop => CODE }: a
# private httpd (private_httpd below) with mpm_event, authz_core and the
# built mod_websocket loaded, whose configuration ends with $body, in
# which @SERVERROOT@ names the test tree's t/, @DIR@ the private
# directory.  Dies unless it answers (and wrote its pid file) within 20 s;
# stop->() ends it (SIGTERM) and waits.
sub module_httpd {
    my ($name, $body) = @_;
    my $serverroot = Apache::Test::vars('serverroot');
    my $dir = Apache::Test::vars('t_logs') . "/$name";
    $body =~ s/\@SERVERROOT\@/$serverroot/g;
    $body =~ s/\@DIR\@/$dir/g;
    my $mpm = loaded_module('mpm_event_module');
    my $authz = loaded_module('authz_core_module');
    my $h = private_httpd(name => $name, conf => <<"CONF");
LoadModule mpm_event_module "$mpm"
LoadModule authz_core_module "$authz"
LoadModule websocket_module "$serverroot/../.libs/mod_websocket.so"
$body
CONF
    my %h = (pid => $h->pid, port => $h->port, dir => $h->dir,
             stop => sub { $h->stop });
    my $up = wait_up(pid => $h->pid, probe => sub {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $h->port, Timeout => 1);
        return $s && -s "$dir/httpd.pid";
    });
    return \%h if $up;
    $h->stop;
    croak "private httpd $name did not start: "
        . `cat $dir/stdout $dir/error_log 2>/dev/null`;
}

# the test server's parent process id (from t/logs/httpd.pid), or undef
sub httpd_parent_pid {
    my $f = Apache::Test::vars('t_logs') . '/httpd.pid';
    open my $fh, '<', $f or return;
    my $pid = <$fh>;
    return unless defined $pid && $pid =~ /(\d+)/;
    return $1;
}

# current end of the error_log (a byte offset)
sub error_log_mark {
    my $f = error_log_path();
    return -s $f || 0;
}

# lines appended since $mark; in list context the lines, in scalar context
# their number.  error_log_since($mark, qr/.../) keeps only matching lines.
sub error_log_since {
    my ($mark, $re) = @_;
    my $f = error_log_path();
    open my $fh, '<', $f or return;
    binmode $fh;
    seek $fh, $mark, 0;
    local $/ = "\n";
    my @l = <$fh>;
    CORE::close $fh;
    chomp @l;
    @l = grep { /$re/ } @l if $re;
    return @l;
}

# Wait up to $timeout seconds (default 3) until at least $min (default 1)
# new lines match $re; then wait a short $settle (default 0.3 s) for more,
# and return all matching new lines.
sub error_log_wait {
    my ($mark, $re, %o) = @_;
    my $timeout = defined $o{timeout} ? $o{timeout} : 3;
    my $min     = defined $o{min} ? $o{min} : 1;
    my $settle  = defined $o{settle} ? $o{settle} : 0.3;
    my $deadline = Time::HiRes::time() + $timeout;
    my @l;
    while (1) {
        @l = error_log_since($mark, $re);
        last if @l >= $min || Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
    if ($settle) {
        Time::HiRes::sleep($settle);
        @l = error_log_since($mark, $re);
    }
    return @l;
}

# ForensicLog (t/conf/extra.conf.in): a request that carries the header
# "X-Test-Tag: TAG" is logged as "+ID|GET ...|...X-Test-Tag:TAG..." once
# its headers have been read, and as "-ID" when it ends.

# forensic_read(@tags) -> the ForensicLog id of each tagged request (in the
# order of @tags) once the server has read all of them, or () if that has
# not happened within 5 s
sub forensic_read {
    my @tags = @_;
    my $log = Apache::Test::vars('t_logs') . '/forensic_log';
    my $deadline = Time::HiRes::time() + 5;
    while (1) {
        my %id;
        if (open my $fh, '<', $log) {
            while (<$fh>) {
                $id{$2} = $1 if /^\+([^|]+)\|.*\|X-Test-Tag:([^|\s]+)/;
            }
        }
        return map { $id{$_} } @tags unless grep { !$id{$_} } @tags;
        return if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.02);
    }
}

# forensic_ended(@ids) -> how many of the requests @ids have ended
sub forensic_ended {
    my %want = map { $_ => 1 } @_;
    my $log = Apache::Test::vars('t_logs') . '/forensic_log';
    open my $fh, '<', $log or return 0;
    my $n = 0;
    while (<$fh>) {
        $n++ if /^-(\S+)$/ && $want{$1};
    }
    return $n;
}

# Lines since $mark that say an httpd child crashed (the parent logs
# "exit signal ..." when it reaps one, within about a second: this waits
# up to $timeout seconds, default 2, for such a line) or that a sanitizer
# or the C library objected.
sub crash_lines {
    my ($mark, $timeout) = @_;
    return error_log_wait($mark,
        qr/exit signal|Segmentation fault|AddressSanitizer|runtime error|double free|corrupted/,
        timeout => defined $timeout ? $timeout : 2, settle => 0);
}

1;

# ----------------------------------------------------------------------
# RFC 6455 client conveniences (added for the t/rfc6455_*.t tests)

push @EXPORT_OK, qw(ws_close_frame_info);

# $c->handshake6455(%opt): sends an RFC 6455 request (rfc6455_request
# options; host defaults to the connection's host:port) in one write,
# followed in that same write by the bytes of append => '...'; reads the
# response head.  Returns { head, res (parse_head), request, used }.
sub handshake6455 {
    my ($self, %o) = @_;
    $o{host} = $self->hostport unless exists $o{host};
    my $append = delete $o{append};
    my ($req, $used) = rfc6455_request(%o);
    $self->send($req . (defined $append ? $append : ''));
    my $head = $self->read_head($o{timeout});
    return { head => $head, res => parse_head($head), request => $req,
             used => $used };
}

# WSTest->open6455(%opt): connect (ssl, vhost, host, port as for connect)
# and complete an RFC 6455 handshake (other options as handshake6455).
# Returns the connection, or undef with $@ saying what went wrong.
sub open6455 {
    my ($class, %o) = @_;
    my %co;
    for my $k (qw(ssl vhost port timeout nodelay)) {
        $co{$k} = delete $o{$k} if exists $o{$k};
    }
    my $c = $class->connect(%co) or return undef;
    my $r = $c->handshake6455(%o);
    my $acc = $r->{res} ? header($r->{res}, 'Sec-WebSocket-Accept') : undef;
    unless ($r->{res} && $r->{res}{status} == 101 && defined $acc
            && $acc eq $r->{used}{accept}) {
        $@ = 'RFC 6455 handshake failed: '
           . hexdump(defined $r->{head} ? $r->{head} : $c->buffered, 400);
        return undef;
    }
    $c->{handshake} = $r;
    return $c;
}

# $c->flood_until_closed(%opt): writes first => BYTES (if given) and then
# flood => BYTES over and over, with no pause in between, as fast as the
# server takes them (the socket's send buffer stays full), while reading
# what the server sends, until the server ends the connection (EOF, or a
# reset) or timeout => SECONDS (default 20) have passed; started => CODE
# is called once after the first write.  Plain connections only.  Returns
# { ended => 0|1, how => 'EOF'|error text, close => the first close frame
# received (or undef), close_at and end_at => times, written => bytes }.
sub flood_until_closed {
    my ($self, %o) = @_;
    croak 'flood_until_closed: plain connections only' if $self->{ssl};
    my $bytes = $o{flood};
    my $timeout = defined $o{timeout} ? $o{timeout} : 20;
    my $started = $o{started};
    my $out = (defined $o{first} ? $o{first} : '') . $bytes;
    my $off = 0;
    my $sock = $self->{sock};
    my $deadline = _deadline($timeout);
    my %r = (ended => 0, written => 0);
    local $SIG{PIPE} = 'IGNORE';
    $sock->blocking(0);
    while (!$r{ended} && (my $left = $deadline - Time::HiRes::time()) > 0) {
        my $rin = '';
        vec($rin, fileno $sock, 1) = 1;
        my ($rout, $wout) = ($rin, $rin);
        next unless select($rout, $wout, undef, $left) > 0;
        if (vec $rout, fileno $sock, 1) {
            my $n = sysread $sock, my $chunk, 65536;
            if (defined $n && $n > 0) {
                $self->{buf} .= $chunk;
                while (my $f = ws_parse_frame(\$self->{buf})) {
                    next if $r{close} || $f->{opcode} != OP_CLOSE;
                    @r{qw(close close_at)} = ($f, Time::HiRes::time());
                }
            }
            elsif (defined $n || ($! != EAGAIN && $! != EINTR)) {
                @r{qw(ended how)} = (1, defined $n ? 'EOF' : "$!");
            }
        }
        if (!$r{ended} && vec $wout, fileno $sock, 1) {
            my $n = syswrite $sock, $out, length($out) - $off, $off;
            if (defined $n) {
                $r{written} += $n;
                ($out, $off) = ($bytes, 0)
                    if ($off += $n) == length $out;
                $started->() if $started;
                $started = undef;
            }
            elsif ($! != EAGAIN && $! != EINTR) {
                @r{qw(ended how)} = (1, "$!");
            }
        }
    }
    $r{end_at} = Time::HiRes::time() if $r{ended};
    $self->{eof} = 1 if $r{ended};
    $sock->blocking(1);
    return \%r;
}

# ws_close_frame_info($frame) -> { code (undef: empty payload), reason }
sub ws_close_frame_info {
    my $f = shift;
    return undef unless $f && $f->{opcode} == OP_CLOSE;
    my ($code, $reason) = ws_parse_close($f->{payload});
    return { code => $code, reason => $reason, frame => $f };
}

# $c->read_until_close($timeout): reads server frames until a close frame;
# returns (close frame or undef, [frames that came before it]).
sub read_until_close {
    my ($self, $timeout) = @_;
    my $deadline = _deadline($timeout);
    my @before;
    while (1) {
        my $f = $self->read_ws_frame($deadline - Time::HiRes::time());
        return (undef, \@before) unless $f;
        return ($f, \@before) if $f->{opcode} == OP_CLOSE;
        push @before, $f;
    }
}

# ----------------------------------------------------------------------
# --- event loop helpers (t/event_loop.t, t/event_retire.t, t/prefork.t) ---
# Many connections at once, descriptor limits, threads and processes.

push @EXPORT_OK, qw(raise_nofile nofile_limits tid_pid thread_count
                    unused_port);

# (soft, hard) RLIMIT_NOFILE of $pid (default: this process), from
# /proc/<pid>/limits; "unlimited" is returned as 1e9.  () if unreadable.
sub nofile_limits {
    my $pid = shift || 'self';
    open my $fh, '<', "/proc/$pid/limits" or return;
    while (<$fh>) {
        next unless /^Max open files\s+(\S+)\s+(\S+)/;
        return map { $_ eq 'unlimited' ? 1e9 : $_ } $1, $2;
    }
    return;
}

# raise_nofile($want, $pid): raises the soft RLIMIT_NOFILE of $pid
# (default this process) to $want, or to its hard limit if that is lower,
# with prlimit(1).  Returns the soft limit in force afterwards.
sub raise_nofile {
    my ($want, $pid) = @_;
    $pid ||= $$;
    my ($soft, $hard) = nofile_limits($pid) or return 0;
    return $soft if $soft >= $want;
    my $new = $want < $hard ? $want : $hard;
    system 'prlimit', "--pid=$pid", "--nofile=$new:$hard";
    ($soft) = nofile_limits($pid);
    return $soft || 0;
}

# the process (thread group) a Linux thread id belongs to, or undef
sub tid_pid {
    my $tid = shift;
    return undef unless defined $tid && $tid =~ /^\d+$/;
    open my $fh, '<', "/proc/$tid/status" or return undef;
    while (<$fh>) { return $1 if /^Tgid:\s+(\d+)/ }
    return undef;
}

# number of threads of $pid, or undef
sub thread_count {
    my $pid = shift;
    opendir my $d, "/proc/$pid/task" or return undef;
    return scalar grep { /^\d+$/ } readdir $d;
}

# a TCP port on 127.0.0.1 nothing listens on (at the time of the call)
sub unused_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, Proto => 'tcp',
                                  ReuseAddr => 1)
        or croak "cannot find a free port: $!";
    my $port = $s->sockport;
    CORE::close $s;
    return $port;
}

# $c->roundtrip($bytes, $timeout): sends one masked text frame and returns
# the payload of the next message (undef on EOF/timeout).
sub roundtrip {
    my ($self, $bytes, $timeout) = @_;
    $self->send(ws_text($bytes)) or return undef;
    my $m = $self->read_ws_message($timeout) or return undef;
    return $m->{payload};
}

# WSTest->open_many($n, %opt): opens $n RFC 6455 WebSockets concurrently
# (non-blocking connects and handshakes, at most `window` in progress, 100
# by default) and keeps them all open.  Options: path (/echo), host,
# port, vhost (plain connections only), timeout (for the whole batch,
# default 60 s).  Returns (\@connections, \@errors): the connections that
# got a valid 101 (ordinary WSTest connections, blocking again) and one
# text per connection that did not.
sub open_many {
    my ($class, $n, %o) = @_;
    croak 'open_many: no TLS' if $o{ssl};
    my ($host, $port) = server_hostport($o{vhost});
    $host = $o{host} if defined $o{host};
    $port = $o{port} if defined $o{port};
    my $path = $o{path} || '/echo';
    my $window = $o{window} || 100;
    my $deadline = Time::HiRes::time() + ($o{timeout} || 60);
    my $addr = Socket::inet_aton($host)
        or croak "open_many: cannot resolve $host";
    my $peer = Socket::pack_sockaddr_in($port, $addr);

    my (@done, @errors, %busy);        # %busy: fileno => state
    my $rsel = IO::Select->new;
    my $wsel = IO::Select->new;
    my $started = 0;
    my $fail = sub {
        my ($st, $why) = @_;
        $rsel->remove($st->{sock});
        $wsel->remove($st->{sock});
        delete $busy{ fileno $st->{sock} };
        CORE::close $st->{sock};
        push @errors, $why;
    };
    local $SIG{PIPE} = 'IGNORE';
    while (@done + @errors < $n) {
        while ($started < $n && keys %busy < $window) {
            $started++;
            my $sock = IO::Socket::INET->new(Proto => 'tcp');
            unless ($sock) {
                push @errors, "socket: $!";
                next;
            }
            $sock->blocking(0);
            if (!CORE::connect($sock, $peer) && !$!{EINPROGRESS}) {
                push @errors, "connect: $!";
                CORE::close $sock;
                next;
            }
            my ($req, $used) = rfc6455_request(host => "$host:$port",
                                               path => $path);
            $busy{ fileno $sock } = { sock => $sock, out => $req,
                                      accept => $used->{accept}, in => '' };
            $wsel->add($sock);
        }
        my $left = $deadline - Time::HiRes::time();
        last if $left <= 0;
        my ($r, $w) = IO::Select->select($rsel, $wsel, undef,
                                         $left < 0.5 ? $left : 0.5);
        for my $sock (@{ $w || [] }) {
            my $st = $busy{ fileno $sock } or next;
            my $err = getsockopt($sock, Socket::SOL_SOCKET(),
                                 Socket::SO_ERROR());
            $err = $err ? unpack('i', $err) : 0;
            if ($err) {
                local $! = $err;
                $fail->($st, "connect: $!");
                next;
            }
            my $k = syswrite $sock, $st->{out};
            if (!defined $k) {
                $fail->($st, "write: $!") unless $!{EAGAIN} || $!{EINTR};
                next;
            }
            substr $st->{out}, 0, $k, '';
            next if length $st->{out};
            $wsel->remove($sock);
            $rsel->add($sock);
        }
        for my $sock (@{ $r || [] }) {
            my $st = $busy{ fileno $sock } or next;
            my $k = sysread $sock, $st->{in}, 4096, length $st->{in};
            if (!defined $k) {
                $fail->($st, "read: $!") unless $!{EAGAIN} || $!{EINTR};
                next;
            }
            if ($k == 0) {
                $fail->($st, 'EOF before the response: '
                             . hexdump($st->{in}, 200));
                next;
            }
            my $i = index $st->{in}, "\r\n\r\n";
            next if $i < 0;
            my $head = substr $st->{in}, 0, $i + 4, '';
            my $res = parse_head($head);
            my $acc = $res ? header($res, 'Sec-WebSocket-Accept') : undef;
            unless ($res && $res->{status} == 101 && defined $acc
                    && $acc eq $st->{accept}) {
                $fail->($st, 'no valid 101: ' . hexdump($head, 200));
                next;
            }
            $rsel->remove($sock);
            delete $busy{ fileno $sock };
            $sock->blocking(1);
            setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
            push @done, bless {
                sock => $sock, buf => $st->{in}, host => $host,
                port => $port, ssl => 0, eof => 0, timed_out => 0,
            }, $class;
        }
    }
    for my $st (values %busy) {
        $fail->($st, length $st->{out} ? 'timed out connecting'
                                       : 'timed out waiting for the 101');
    }
    push @errors, 'not started' for $started + 1 .. $n;
    return (\@done, \@errors);
}


# ----------------------------------------------------------------------
# private httpds: the tests that need an httpd of their own (another MPM,
# other limits, one they stop) start it with these

push @EXPORT_OK, qw(wait_up private_httpd);

# wait_up(port => $port, path => '/echo', pid => $pid, secs => 20)
# -> the first RFC 6455 connection to PATH that opens, tried every 0.2 s
# for SECS seconds, else undef; probe => sub { ... } tries that instead
# (until it returns true, which is returned). With pid, it gives up as
# soon as that child has exited (and sets $? to its status).
sub wait_up {
    my %opt = @_;
    my $probe = $opt{probe} || sub {
        WSTest->open6455(host => '127.0.0.1', port => $opt{port},
                         path => $opt{path}, timeout => 2);
    };
    my $deadline = Time::HiRes::time() + ($opt{secs} || 20);
    while (Time::HiRes::time() < $deadline) {
        my $up = $probe->();
        return $up if $up;
        return if $opt{pid} && waitpid($opt{pid}, POSIX::WNOHANG()) == $opt{pid};
        Time::HiRes::sleep(0.2);
    }
    return;
}

# private_httpd(name => 'prefork', conf => $text, setsid => 1) -> a
# WSTest::PrivateHttpd: writes t/logs/NAME/httpd.conf (ServerRoot, a free
# port to Listen on, PidFile, ErrorLog, DefaultRuntimeDir, LogLevel info,
# then $text: the MPM, the modules and the rest) and starts
# "httpd -D FOREGROUND" on it, its output in t/logs/NAME/stdout (setsid:
# in a session and process group of its own). ->port, ->dir, ->pid,
# ->wait_up(path => ... or probe => ...) as wait_up() above, ->stop.
sub private_httpd {
    my %opt = @_;
    my $dir = Apache::Test::vars('t_logs') . "/$opt{name}";
    mkdir $dir;
    unlink "$dir/error_log", "$dir/httpd.pid", "$dir/stdout";
    my $port = unused_port();
    open my $fh, '>', "$dir/httpd.conf" or croak "$dir/httpd.conf: $!";
    print $fh <<"CONF";
# written by $0: a private httpd
ServerRoot "$dir"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$dir/httpd.pid"
ErrorLog "$dir/error_log"
DefaultRuntimeDir "$dir"
LogLevel info
$opt{conf}
CONF
    CORE::close $fh;
    my $httpd = Apache::Test::vars('httpd');
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if (!$pid) {
        POSIX::setsid() if $opt{setsid};
        open STDOUT, '>>', "$dir/stdout";
        open STDERR, '>>', "$dir/stdout";
        { exec $httpd, '-D', 'FOREGROUND', '-d', $dir, '-f', "$dir/httpd.conf" }
        POSIX::_exit(127);
    }
    return bless { dir => $dir, port => $port, pid => $pid },
                 'WSTest::PrivateHttpd';
}

package WSTest::PrivateHttpd;

sub dir  { $_[0]{dir} }
sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }

sub wait_up {
    my ($self, %opt) = @_;
    return WSTest::wait_up(port => $self->{port}, pid => $self->{pid}, %opt);
}

# ->stop($secs): SIGTERM unless it has been reaped already, then waits
# up to $secs (10) seconds for it to exit; true once it has. It leaves $?
# alone (an END block's $? is the test's exit status).
sub stop {
    my ($self, $secs) = @_;
    local $?;
    my $pid = $self->{pid};
    my $w = waitpid($pid, POSIX::WNOHANG());
    return 1 if $w != 0;                        # exited, or reaped before
    kill 'TERM', $pid;
    my $until = Time::HiRes::time() + ($secs || 10);
    while (Time::HiRes::time() < $until) {
        return 1 if waitpid($pid, POSIX::WNOHANG()) != 0;
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

package WSTest;

1;
# --- end event loop helpers ---
