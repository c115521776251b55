# The tcp_proxy plugin against scripts/tcp-echo: subprotocol choice
# (binary, base64, neither, hixie), 10 MiB through the echo byte for byte,
# bad base64, a backend that is not there (1011), one that does not answer
# the connect (1011 after ConnectTimeout), one that closes (1000) or
# resets (1011), the client's close reaching the backend as a half-close,
# backpressure both ways, bad WebSocketOptions refused by "httpd -t", and
# one 1 GiB message through the echo while the child's memory stays
# bounded (the plugin streams it; it has no thread of its own).
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Cwd ();
use Digest::MD5 ();
use IO::Select ();
use IO::Socket::INET ();
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX ();
use Socket qw(:DEFAULT SOL_SOCKET SO_LINGER SO_REUSEADDR);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 86;

# ---------------------------------------------------------------------
# the backend ports, as Apache::Test filled them into extra.conf, and
# /proxy's WebSocketMaxMessageSize (the 1 GiB message needs 0 or >= 1G)
my ($echo_port, $other_port, $proxy_max_message);
{
    my $conf = Apache::Test::vars('t_conf') . '/extra.conf';
    open my $fh, '<', $conf or die "$conf: $!";
    my $loc = '';
    while (<$fh>) {
        $loc = $1 if m{^\s*<Location\s+(\S+?)>};
        $proxy_max_message = $1
            if $loc eq '/proxy' && /^\s*WebSocketMaxMessageSize\s+(\S+)/;
        next unless /^\s*WebSocketOption\s+Backend\s+\S+:(\d+)/;
        $echo_port = $1 if $loc eq '/proxy';
        $other_port = $1 if $loc eq '/proxy-other';
    }
    die "no Backend ports for /proxy and /proxy-other in $conf"
        unless $echo_port && $other_port;
}

# scripts/tcp-echo on $echo_port; its report lines are read through a pipe
my $echo_script = "$FindBin::Bin/../scripts/tcp-echo";
my $echo_pid = open(my $echo_out, '-|', $echo_script, $echo_port)
    or die "cannot run $echo_script: $!";
my $echo_buf = '';
END { if ($echo_pid) { kill 'TERM', $echo_pid; waitpid $echo_pid, 0 } }

# next line from tcp-echo matching $re (others skipped), or undef
sub echo_line {
    my ($re, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 10);
    my $sel = IO::Select->new($echo_out);
    while (1) {
        while ($echo_buf =~ s/^([^\n]*)\n//) {
            my $l = $1;
            return $l if $l =~ $re;
        }
        my $left = $deadline - Time::HiRes::time();
        return undef if $left <= 0 || !$sel->can_read($left);
        my $n = sysread $echo_out, $echo_buf, 4096, length $echo_buf;
        return undef unless $n;
    }
}
die "tcp-echo did not start" unless defined echo_line(qr/^listening$/);

sub proxy { WSTest->open6455(path => '/proxy', @_) or die $@ }

sub msg {
    my ($c, $timeout) = @_;
    my $m = $c->read_ws_message($timeout // 5) or return [];
    return [$m->{opcode}, $m->{payload}];
}

sub proto_of { header($_[0]{handshake}{res}, 'Sec-WebSocket-Protocol') }

sub close_code {
    my ($c, $timeout) = @_;
    my ($f, $before) = $c->read_until_close($timeout // 5);
    my $i = ws_close_frame_info($f);
    return wantarray ? ($i && $i->{code}, $i && $i->{reason}, $before)
                     : $i && $i->{code};
}

# ---------------------------------------------------------------------
# subprotocols
my $bytes = join '', map { chr } 0 .. 255;
{
    my $c = proxy(protocol => 'binary');
    is proto_of($c), 'binary', 'binary offered: chosen';
    $c->send(ws_binary($bytes));
    is_deeply msg($c), [OP_BINARY, $bytes], 'binary round trip';
    $c->send(ws_text('text goes as its bytes'));
    is_deeply msg($c), [OP_BINARY, 'text goes as its bytes'],
              'a text message goes to the backend as its bytes';
    $c->send(ws_close(1000));
    is close_code($c), 1000, 'close answered';
}
{
    my $c = proxy(protocol => 'base64, binary');
    is proto_of($c), 'binary', 'binary preferred over base64';
}
{
    my $c = proxy(protocol => 'base64');
    is proto_of($c), 'base64', 'base64 offered: chosen';
    $c->send(ws_text(encode_base64($bytes, '')));
    my $got = '';
    while (length $got < length $bytes) {
        my $m = msg($c);
        last unless @$m && $m->[0] == OP_TEXT;
        $got .= decode_base64($m->[1]);
    }
    is hexdump($got), hexdump($bytes), 'base64 round trip (text messages)';
    $c->send(ws_text(''));
    $c->send(ws_text(encode_base64('after empty', '')));
    is_deeply msg($c), [OP_TEXT, encode_base64('after empty', '')],
              'an empty message is fine';

    $c->send(ws_text('not base64!'));
    my ($code, $reason) = close_code($c);
    is $code, 1007, 'invalid base64: close 1007';
    is $reason, 'invalid base64', 'with a reason';
}
for my $bad ('QUJD=', 'QU=D', 'QQ===', "QUJD\n", 'QUJ', 'QQ==QQ==') {
    my $c = proxy(protocol => 'base64');
    $c->send(ws_text($bad));
    is close_code($c), 1007, 'invalid base64 ' . hexdump($bad) . ': 1007';
}
{
    my $c = proxy(protocol => 'base64');
    $c->send(ws_binary('raw'));
    is close_code($c), 1003, 'binary message in base64 mode: 1003';
}
{
    my $c = proxy();
    is proto_of($c), undef, 'nothing offered: no subprotocol in the answer';
    $c->send(ws_binary($bytes));
    is_deeply msg($c), [OP_BINARY, $bytes], 'and binary semantics';
}
{
    my $c = proxy(protocol => 'chat');
    is proto_of($c), undef, 'something else offered: none chosen';
}
{
    my $c = WSTest->connect;
    my $r = $c->handshake76(path => '/proxy');
    is $r->{res} && $r->{res}{status}, 101, 'hixie-76 client';
    $c->send(hixie_text_frame(encode_base64("hixie\x00\xff", '')));
    my $f = $c->read_hixie_frame(5);
    is $f && hexdump(decode_base64($f->{data})), hexdump("hixie\x00\xff"),
       'hixie-76 gets base64 text';
}

# ---------------------------------------------------------------------
# Through the echo: write and read at the same time (non-blocking) so
# that neither side waits for the other.  $o{frame} makes a frame of each
# chunk, $o{unframe} gets the bytes back from each frame received; with
# $o{stall} seconds, nothing is read at first, or once $o{stall_after}
# bytes have come back (only written, as far as the server takes it);
# $o{tick} is called at every turn.  Returns the bytes received, how many bytes had been
# written when the stall ended and for how long before that no write had
# succeeded.
sub transfer {
    my ($c, $data, %o) = @_;
    my $sock = $c->sock;
    $sock->blocking(0);
    my ($out, $in, $raw, $off) = ('', '', $c->buffered, 0);
    my $sel = IO::Select->new($sock);
    my $t0 = Time::HiRes::time();
    my ($stall_from, $stalled_until);
    my ($written_in_stall, $last_write, $idle) = (undef, $t0, 0);
    while (length $in < length $data && Time::HiRes::time() < $t0 + 120) {
        if (length $out < 65536 && $off < length $data) {
            $out .= $o{frame}->(substr $data, $off, $o{chunk});
            $off += $o{chunk};
        }
        my $now = Time::HiRes::time();
        if (!defined $stall_from && length $in >= ($o{stall_after} || 0)) {
            ($stall_from, $stalled_until) = ($now, $now + ($o{stall} || 0));
        }
        my $reading = !defined $stall_from || $now >= $stalled_until;
        $o{tick}->() if $o{tick};
        if ($reading && defined $stall_from && !defined $written_in_stall) {
            $written_in_stall = $off - length $out;
            $idle = Time::HiRes::time() - $last_write;
        }
        my ($r, $w) = IO::Select->select($reading ? $sel : undef,
                                         length $out ? $sel : undef,
                                         undef, $reading ? 1 : 0.05);
        if ($w && @$w) {
            my $n = syswrite $sock, $out, 65536;
            if ($n) {
                substr($out, 0, $n, '');
                $last_write = Time::HiRes::time();
            }
        }
        if ($r && @$r) {
            my $n = sysread $sock, $raw, 262144, length $raw;
            last if defined $n && $n == 0;
            while (my $f = ws_parse_frame(\$raw)) {
                return ($in . "[opcode $f->{opcode}]", $written_in_stall,
                        $idle) if $f->{opcode} >= 8;
                $in .= $o{unframe}->($f);
            }
        }
    }
    $sock->blocking(1);
    return ($in, $written_in_stall, $idle);
}

sub first_difference {
    my ($x, $y) = @_;
    my $n = length $x < length $y ? length $x : length $y;
    for (my $i = 0; $i < $n; $i += 4096) {
        next if substr($x, $i, 4096) eq substr($y, $i, 4096);
        for my $j ($i .. $i + 4095) {
            return $j if substr($x, $j, 1) ne substr($y, $j, 1);
        }
    }
    return $n;
}

sub binary_payload {
    $_[0]{opcode} == OP_BINARY ? $_[0]{payload} : "[opcode $_[0]{opcode}]"
}

my $big = join '', map { pack 'N*', map { int rand 4294967296 } 1 .. 16384 }
                   1 .. 160;   # 10 MiB
{
    my $c = proxy(protocol => 'binary');
    my $t0 = Time::HiRes::time();
    my ($got) = transfer($c, $big, chunk => 65536, frame => \&ws_binary,
                         unframe => \&binary_payload);
    my $took = Time::HiRes::time() - $t0;
    is length $got, length $big,
       sprintf '10 MiB through the echo (binary) in %.1f s', $took;
    ok $got eq $big, 'byte for byte'
        or diag 'first difference at ' . first_difference($got, $big);
    $c->send(ws_close(1000));
    is close_code($c, 10), 1000, 'closes normally afterwards';
}
{
    # one big message: it streams to the echo while the echo's answer
    # streams back (neither side waits for the whole)
    my $c = proxy(protocol => 'binary');
    my ($got) = transfer($c, $big, chunk => length $big,
                         frame => \&ws_binary, unframe => \&binary_payload);
    ok $got eq $big, 'one 10 MiB message through the echo'
        or diag sprintf 'got %d bytes: %s', length $got,
                        hexdump(substr($got, -40), 40);
}
{
    my $data = substr $big, 0, 3 * 1024 * 1024;
    my $c = proxy(protocol => 'base64');
    my ($got) = transfer($c, $data, chunk => 30000,
                         frame => sub { ws_text(encode_base64($_[0], '')) },
                         unframe => sub { decode_base64($_[0]{payload}) });
    ok $got eq $data, '3 MiB through the echo as base64, byte for byte'
        or diag sprintf 'got %d bytes, first difference at %d',
                        length $got, first_difference($got, $data);
}

{
    # a client that does not read for 2 s while it sends 12 MiB: what the
    # echo answers meanwhile waits in the proxy, then all comes back
    my $data = substr $big x 2, 0, 12 * 1024 * 1024;
    my $c = proxy(protocol => 'binary');
    my ($got) = transfer($c, $data, chunk => 65536, stall => 2,
                         frame => \&ws_binary, unframe => \&binary_payload);
    ok $got eq $data, 'a client that reads late gets all 12 MiB back'
        or diag sprintf 'got %d bytes: %s', length $got,
                        hexdump(substr($got, -40), 40);
}

{
    # the deadlock this once was: 60 MiB through the echo while the client
    # stops reading for 4 s mid-way but goes on writing as far as TCP lets
    # it.  The proxy pauses reading the client instead of holding the
    # echo's answers, so nothing stalls and memory stays bounded.
    my $data = $big x 6;
    my $before = snapshot();
    my ($peak, $next) = (0, 0);
    my $sample = sub {
        return if Time::HiRes::time() < $next;
        $next = Time::HiRes::time() + 0.1;
        my $g = rss_growth($before, snapshot());
        $peak = $g if $g > $peak;
    };
    my $c = proxy(protocol => 'binary');
    my $t0 = Time::HiRes::time();
    my ($got, $written) = transfer($c, $data, chunk => 65536, stall => 4,
                         stall_after => 20 * 1024 * 1024, tick => $sample,
                         frame => \&ws_binary, unframe => \&binary_payload);
    is length $got, length $data, sprintf '60 MiB through the echo with a '
       . '4 s stall after 20 MiB (%.1f MiB written by its end), in %.1f s',
       ($written // 0) / 1048576, Time::HiRes::time() - $t0;
    ok $got eq $data, 'all of it back, in order'
        or diag 'first difference at ' . first_difference($got, $data);
    SKIP: {
        # ASan's quarantine keeps freed memory: RSS says nothing there
        skip 'RSS under AddressSanitizer', 1 if $ENV{WS_SANITIZE};
        ok $peak < 12 * 1024, "the children's RSS stayed bounded (grew by "
           . "at most $peak kB)";
    }
    $c->send(ws_close(1000));
    close_code($c, 10);
}

# ---------------------------------------------------------------------
# The client's close reaches the backend as a half-close: after the last
# bytes the client sent, the backend sees EOF (not a reset).
{
    # through the echo: everything comes back, then the client closes;
    # tcp-echo sees EOF and closes cleanly
    my $len = 2 * 1024 * 1024 + 17;
    my $c = proxy(protocol => 'binary');
    my ($got) = transfer($c, substr($big, 0, $len), chunk => 65536,
                         frame => \&ws_binary, unframe => \&binary_payload);
    is length $got, $len, 'client close: the echo came back first';
    $c->send(ws_close(1000, 'done'));
    is close_code($c, 10), 1000, 'client close answered';
    my $l = echo_line(qr/^done \d+ in=$len /);
    is $l && ($l =~ /out=(\d+) (.*)/)[1], 'eof',
       'backend saw EOF (half-close)';
    is $l && ($l =~ /out=(\d+)/)[0], $len, 'after sending back all it had';
}
{
    # a message and the close in one write, to a backend that only reads:
    # the proxy writes out what it buffered before it half-closes
    my $len = 2 * 1024 * 1024 + 17;
    my $msg = ws_binary(substr($big, 0, $len)) . ws_close(1000, 'done');
    my ($got, $end);
    my $c = with_backend(sub {
        my ($b, $c) = @_;
        ($got, $end) = write_and_read($c->sock, \$msg, $b, 10);
    });
    is length $got, $len, 'message and close in one write: the backend got '
       . 'every byte';
    ok $got eq substr($big, 0, $len), 'in order';
    is $end, 'eof', 'then EOF (half-close)';
    is close_code($c, 10), 1000, 'and the client\'s close was answered';
}
TODO: {
    # The same through the echo: the echo still answers when the WebSocket
    # ends.  The proxy reads (and drops) the answer only until
    # on_disconnect, which comes right after the closing handshake; what
    # the echo sends after that meets a closed socket (a reset).  Draining
    # longer needs the module to linger on the backend socket for us.
    local $TODO = 'no lingering on the backend after on_disconnect (API)';
    my $len = 2 * 1024 * 1024 + 17;
    my $c = proxy(protocol => 'binary');
    $c->send(ws_binary(substr($big, 0, $len)) . ws_close(1000, 'done'));
    close_code($c, 10);
    my $l = echo_line(qr/^done \d+ in=\d+ /);
    is $l && ($l =~ /out=(\d+) (.*)/)[1], 'eof',
       'through the echo: the backend saw EOF';
    is $l && ($l =~ /out=(\d+)/)[0], $len,
       'and could still send back all it had (the proxy drained)';
}
{
    # the client just goes away (after the echo came back): the same
    my $c = proxy(protocol => 'binary');
    $c->send(ws_binary('x' x 100000));
    Time::HiRes::sleep(0.2);
    $c->close;
    my $l = echo_line(qr/^done \d+ in=100000 /);
    like $l // '', qr/out=100000 eof$/, 'client abort: backend half-closed too';
}

# ---------------------------------------------------------------------
# /proxy-other: nothing listens there
{
    my $probe = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$other_port",
                                      Timeout => 2);
    die "something listens on $other_port" if $probe;
    my $mark = error_log_mark();
    my $c = WSTest->open6455(path => '/proxy-other', protocol => 'binary')
        or die $@;
    my ($code, $reason) = close_code($c);
    is $code, 1011, 'backend refused: close 1011';
    is $reason, 'backend unavailable', 'reason "backend unavailable"';
    ok scalar(error_log_wait($mark, qr/tcp_proxy: .*cannot connect to backend 127\.0\.0\.1:$other_port/)),
       'and a log line';
}
{
    # a backend that does not answer the connect: a listener whose accept
    # queue is full drops the SYN; /proxy-other has ConnectTimeout 2
    socket(my $l, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    setsockopt($l, SOL_SOCKET, SO_REUSEADDR, 1) or die "setsockopt: $!";
    bind($l, pack_sockaddr_in($other_port, inet_aton('127.0.0.1')))
        or die "bind $other_port: $!";
    listen($l, 0) or die "listen: $!";
    my @fill = map {
        IO::Socket::INET->new(PeerAddr => "127.0.0.1:$other_port",
                              Blocking => 0)
    } 1 .. 3;
    Time::HiRes::sleep(0.2);
    my $mark = error_log_mark();
    my $t0 = Time::HiRes::time();
    my $c = WSTest->open6455(path => '/proxy-other', protocol => 'binary')
        or die $@;
    my ($code, $reason) = close_code($c, 10);
    my $took = Time::HiRes::time() - $t0;
    is $code, 1011, 'backend not answering the connect: close 1011';
    ok $took > 1.5 && $took < 6, sprintf 'after ConnectTimeout (2 s): %.1f s',
       $took;
    ok scalar(error_log_wait($mark, qr/timeout.*tcp_proxy: .*cannot connect to backend 127\.0\.0\.1:$other_port/i)),
       'and a log line';
    close $_ for grep { defined } @fill;
    close $l;
}

# a backend played by the test: it closes, or resets
sub with_backend {
    my ($act) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$other_port",
                                  Listen => 5, ReuseAddr => 1)
        or die "listen on $other_port: $!";
    my $c = WSTest->open6455(path => '/proxy-other', protocol => 'binary')
        or die $@;
    my $b = IO::Select->new($l)->can_read(5) ? $l->accept : undef;
    die 'the proxy did not connect' unless $b;
    $act->($b, $c);
    close $l;
    return $c;
}
{
    my $mark = error_log_mark();
    my $c = with_backend(sub {
        my ($b, $c) = @_;
        syswrite $b, 'bye';
        close $b;
    });
    is_deeply msg($c), [OP_BINARY, 'bye'], 'data sent before the backend closed';
    my ($code, $reason) = close_code($c);
    is $code, 1000, 'backend closed: close 1000';
    is $reason, 'backend closed', 'reason "backend closed"';
    ok scalar(error_log_wait($mark, qr/tcp_proxy: .*closed the connection/)),
       'and a log line';
}
{
    my $mark = error_log_mark();
    my $c = with_backend(sub {
        my ($b, $c) = @_;
        $c->send(ws_binary('to be ignored'));
        Time::HiRes::sleep(0.2);
        setsockopt($b, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        close $b;   # RST
    });
    my ($code, $reason) = close_code($c);
    is $code, 1011, 'backend reset: close 1011';
    ok scalar(error_log_wait($mark, qr/tcp_proxy: .*reading from backend .* failed/)),
       'and a log line';
}

# backpressure, with a backend played by the test
# write as much of $$data as $fh takes until $until; returns bytes written
sub write_until {
    my ($fh, $data, $until) = @_;
    $fh->blocking(0);
    my ($off, $sel) = (0, IO::Select->new($fh));
    while (Time::HiRes::time() < $until && $off < length $$data) {
        next unless $sel->can_write(0.05);
        my $n = syswrite $fh, $$data, 65536, $off;
        $off += $n if $n;
    }
    $fh->blocking(1);
    return $off;
}

# read from $fh until $n bytes or $timeout; returns them
sub read_n {
    my ($fh, $n, $timeout) = @_;
    my ($buf, $sel) = ('', IO::Select->new($fh));
    my $until = Time::HiRes::time() + $timeout;
    while (length $buf < $n && Time::HiRes::time() < $until) {
        next unless $sel->can_read(0.2);
        my $want = $n - length $buf;
        sysread($fh, $buf, $want < 262144 ? $want : 262144, length $buf)
            or last;
    }
    return $buf;
}

# write $$data to $out while reading $in, until $in ends or $timeout;
# returns (what was read, 'eof', 'error <why>' or 'timeout')
sub write_and_read {
    my ($out, $data, $in, $timeout) = @_;
    my ($off, $got, $end) = (0, '', 'timeout');
    my ($rs, $ws) = (IO::Select->new($in), IO::Select->new($out));
    my $until = Time::HiRes::time() + $timeout;
    $out->blocking(0);
    while (Time::HiRes::time() < $until) {
        my ($r, $w) = IO::Select->select($rs, $off < length $$data ? $ws
                                                                   : undef,
                                         undef, 0.2);
        if ($w && @$w) {
            my $n = syswrite $out, $$data, 65536, $off;
            $off += $n if $n;
        }
        next unless $r && @$r;
        my $n = sysread $in, $got, 262144, length $got;
        ($end = defined $n ? 'eof' : "error $!"), last unless $n;
    }
    $out->blocking(1);
    return ($got, $end);
}
{
    # the backend floods, the client does not read: the proxy stops
    # reading the backend (no 1008 for a queue over
    # WebSocketMaxPendingBytes), and the client gets every byte later
    my ($written, $got);
    my $flood = substr $big x 4, 0, 40 * 1024 * 1024;
    my $c = with_backend(sub {
        my ($b, $c) = @_;
        $written = write_until($b, \$flood, Time::HiRes::time() + 3);
        close $b;
    });
    ok $written < length $flood, sprintf 'a client not reading holds the '
       . 'backend up: it could write %.1f of 40 MiB in 3 s',
       $written / 1048576;
    $got = '';
    while (length $got < $written) {
        my $m = msg($c, 10);
        last unless @$m && $m->[0] == OP_BINARY;
        $got .= $m->[1];
    }
    ok $got eq substr($flood, 0, $written),
       'then the client gets all of it, in order';
    is close_code($c), 1000, 'and then the close for the backend\'s EOF';
}
{
    # the backend does not read: the proxy stops reading the client
    my ($whole, $got);
    my $data = substr $big x 4, 0, 40 * 1024 * 1024;
    my $flen = length ws_binary('x' x 65536);
    my $c = with_backend(sub {
        my ($b, $c) = @_;
        my $frames = join '', map { ws_binary(substr $data, $_ * 65536, 65536) }
                                  0 .. 639;
        my $written = write_until($c->sock, \$frames,
                                  Time::HiRes::time() + 3);
        $whole = int($written / $flen);
        # every whole frame (the proxy streams: the start of a frame
        # written in part may have gone too)
        $got = read_n($b, $whole * 65536, 10);
        # complete a frame written in part (the proxy reads again now)
        $c->send(substr $frames, $written, $flen - $written % $flen)
            if $written % $flen;
        close $b;
    });
    ok $whole < 640, sprintf 'a backend not reading holds the client up: '
       . 'it could write %.1f of 40 MiB in 3 s', $whole / 16;
    ok $got eq substr($data, 0, $whole * 65536),
       'then the backend gets it all, in order'
        or diag sprintf 'got %d of %d bytes, first difference at %d',
                        length $got, $whole * 65536,
                        first_difference($got, substr($data, 0, $whole * 65536));
}

# ---------------------------------------------------------------------
# One 1 GiB message through the echo, streamed both ways: the client sends
# it as 1 MiB frames (a binary frame, then continuations) while it reads
# the echo's answer (binary messages of the proxy's chunk size); both sides
# are compared through MD5.  The proxy never holds the message: the
# child's memory stays bounded.  /proxy needs WebSocketMaxMessageSize 0
# (or at least 1G) for it.
sub size_bytes {
    my ($v) = @_;
    return undef unless defined $v && $v =~ /^(\d+)([KMG]?)$/i;
    return $1 * {'' => 1, K => 1024, M => 1 << 20, G => 1 << 30}->{uc $2};
}

# stream_message($c, $total, $piece, $tick): returns { back (bytes),
# sent_md5, back_md5, secs, end (what stopped the reading: '' when all came
# back, else 'eof', 'timeout' or 'opcode N') }
sub stream_message {
    my ($c, $total, $piece, $tick) = @_;
    my $sock = $c->sock;
    my $sel = IO::Select->new($sock);
    my ($md5_out, $md5_in) = (Digest::MD5->new, Digest::MD5->new);
    my $block = join '', map { pack 'N', int rand 4294967296 } 1 .. $piece / 4;
    my ($sent, $back, $out, $raw, $end) = (0, 0, '', $c->buffered, '');
    my $t0 = Time::HiRes::time();
    $sock->blocking(0);
  TRANSFER:
    while ($back < $total) {
        if (Time::HiRes::time() > $t0 + 300) { $end = 'timeout'; last }
        if (length $out < $piece && $sent < $total) {
            my $n = $total - $sent < $piece ? $total - $sent : $piece;
            # every piece differs: its number up front
            my $p = substr pack('N', $sent / $piece) . $block, 0, $n;
            $md5_out->add($p);
            $out .= ws_frame($sent ? OP_CONT : OP_BINARY, $p,
                             fin => $sent + $n == $total ? 1 : 0);
            $sent += $n;
        }
        $tick->() if $tick;
        my ($r, $w) = IO::Select->select($sel, length $out ? $sel : undef,
                                         undef, 1);
        if ($w && @$w) {
            my $n = syswrite $sock, $out, 1 << 20;
            substr($out, 0, $n, '') if $n;
        }
        next unless $r && @$r;
        my $n = sysread $sock, $raw, 1 << 20, length $raw;
        if (!$n) { $end = 'eof'; last }
        # whole frames from $raw (server frames are not masked)
        my $pos = 0;
        while (length($raw) - $pos >= 2) {
            my ($b0, $len) = unpack 'CC', substr $raw, $pos, 2;
            my $h = 2;
            if (($len &= 0x7f) == 126) {
                last if length($raw) - $pos < 4;
                ($len, $h) = (unpack('n', substr $raw, $pos + 2, 2), 4);
            }
            elsif ($len == 127) {
                last if length($raw) - $pos < 10;
                my ($hi, $lo) = unpack 'NN', substr $raw, $pos + 2, 8;
                ($len, $h) = ($hi * 4294967296 + $lo, 10);
            }
            last if length($raw) - $pos < $h + $len;
            if (($b0 & 0x0f) >= 8) {
                $end = 'opcode ' . ($b0 & 0x0f);
                last TRANSFER;
            }
            $md5_in->add(substr $raw, $pos + $h, $len);
            $back += $len;
            $pos += $h + $len;
        }
        substr($raw, 0, $pos, '');
    }
    $sock->blocking(1);
    return { back => $back, sent_md5 => $md5_out->hexdigest,
             back_md5 => $md5_in->hexdigest, end => $end,
             secs => Time::HiRes::time() - $t0 };
}
SKIP: {
    my $max = $proxy_max_message;
    my $allowed = defined $max && ($max eq '0' || (size_bytes($max) // 0)
                                                  >= 1 << 30);
    ok $allowed, '<Location /proxy> allows a 1 GiB message'
        or diag 'add "WebSocketMaxMessageSize 0" to <Location /proxy> in '
              . 't/conf/extra.conf.in (now: ' . ($max // 'the default')
              . ')';
    skip 'no 1 GiB message under valgrind', 6 if $ENV{WS_VALGRIND};
    skip 'no 1 GiB message: /proxy refuses it', 6 unless $allowed;
    my $total = 1 << 30;
    my $before = snapshot();
    my ($peak, $next) = (0, 0);
    my $sample = sub {
        return if Time::HiRes::time() < $next;
        $next = Time::HiRes::time() + 0.25;
        my $g = rss_growth($before, snapshot());
        $peak = $g if $g > $peak;
    };
    my $c = proxy(protocol => 'binary');
    my $r = stream_message($c, $total, 1 << 20, $sample);
    $sample->();
    is $r->{back}, $total, sprintf '1 GiB message through the echo in %.1f s',
       $r->{secs}
        or diag "reading ended: $r->{end}";
    is $r->{back_md5}, $r->{sent_md5}, 'byte for byte (MD5)';
    ok $r->{secs} < 60, 'in less than a minute';
    SKIP: {
        skip 'RSS under AddressSanitizer', 1 if $ENV{WS_SANITIZE};
        ok $peak < 50 * 1024, "the children's RSS stayed bounded (grew by "
           . "at most $peak kB)";
    }
    $c->send(ws_close(1000));
    is close_code($c, 10), 1000, 'closes normally afterwards';
    my $l = echo_line(qr/^done \d+ in=$total /);
    like $l // '', qr/ out=$total eof$/, 'the echo took and sent it all';
}

# ---------------------------------------------------------------------
# Bad WebSocketOptions are configuration errors, found by "httpd -t"
{
    my $serverroot = Apache::Test::vars('serverroot');
    my $plugin = Cwd::realpath("$serverroot/../modules/tcp_proxy/.libs/"
                               . 'mod_websocket_tcp_proxy.so');
    my $dir = Apache::Test::vars('t_logs') . '/plugin-proxy-config';
    mkdir $dir;
    my @cases = (
        # [ name, WebSocketOption lines, expected error (undef: Syntax OK) ]
        ['no Backend', [],
         qr/missing "WebSocketOption Backend host:port"/],
        ['a Backend without a port', ['Backend 127.0.0.1'],
         qr/WebSocketOption Backend "127\.0\.0\.1" is not host:port/],
        ['a Backend with a bad port', ['Backend 127.0.0.1:99999'],
         qr/WebSocketOption Backend "127\.0\.0\.1:99999" is not host:port/],
        ['a bad ConnectTimeout', ['Backend 127.0.0.1:9', 'ConnectTimeout soon'],
         qr/WebSocketOption ConnectTimeout "soon" is not a number of seconds/],
        ['an unknown option', ['Backend 127.0.0.1:9', 'Backnd 127.0.0.1:9'],
         qr/unknown WebSocketOption Backnd/],
        ['good options', ['Backend 127.0.0.1:9', 'ConnectTimeout 2.5'],
         undef],
    );
    for my $case (@cases) {
        my ($name, $options, $want) = @$case;
        my ($status, $out) = httpd_config_test($dir, join '',
            "<Location /ws>\n",
            "    SetHandler websocket-handler\n",
            "    WebSocketHandler \"$plugin\" tcp_proxy_init\n",
            (map { "    WebSocketOption $_\n" } @$options),
            "</Location>");
        ok !($status & 127), "$name: httpd -t did not crash";
        if (defined $want) {
            isnt $status >> 8, 0, "$name: httpd -t fails";
            like $out, qr/\Q$plugin\E tcp_proxy_init: .*$want/,
                 "$name: the error says why";
        }
        else {
            is $status >> 8, 0, "$name: httpd -t passes";
            like $out, qr/Syntax OK/, "$name: Syntax OK";
        }
    }
}

{
    my $mark = error_log_mark();
    my $c = proxy(protocol => 'binary');
    $c->send(ws_binary('still fine'));
    is_deeply msg($c), [OP_BINARY, 'still fine'], 'the proxy still works';
    my @bad = error_log_since(0, qr/exit signal|AH00052/);
    is scalar(@bad), 0, 'no child crashed' or diag join "\n", @bad;
}
