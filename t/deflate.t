# permessage-deflate (RFC 7692) against the real server through the echo
# plugin, with a raw client that compresses and inflates with zlib
# (Compress::Raw::Zlib): the answers to offers (accepted, declined, per
# location settings, never on hixie-76), compressed messages both ways
# (context takeover, none, small windows, 8-bit windows, fragments,
# level 0), RSV1 misuse (1002), data that does not inflate (1007), the
# size limit after inflation (1009), and a message that inflates to
# 512 MiB: closed with 1009 at once, without the server's memory
# following it.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Compress::Raw::Zlib qw(Z_OK Z_BUF_ERROR Z_SYNC_FLUSH Z_STREAM_END);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 81;

# ---------------------------------------------------------------------
# the client's zlib

sub deflater {
    my ($bits, %o) = @_;
    my ($d, $st) = Compress::Raw::Zlib::Deflate->new(
        -WindowBits => -($bits || 15) < -8 ? -($bits || 15) : -9,
        -AppendOutput => 1, -Level => $o{level} // 6,
        -MemLevel => $o{mem} // 8);
    die "deflateInit: $st" unless $st == Z_OK;
    return $d;
}

# one message: Z_SYNC_FLUSH, the 00 00 FF FF tail removed
sub compress_msg {
    my ($d, $data) = @_;
    my $out = '';
    # nothing to flush: no bytes at all (as Python's websockets sends an
    # empty message)
    return '' if $data eq '';
    $d->deflate($data, $out) == Z_OK or die 'deflate';
    $d->flush($out, Z_SYNC_FLUSH) == Z_OK or die 'flush';
    die 'no tail' unless substr($out, -4) eq "\0\0\xff\xff";
    substr($out, -4) = '';
    return $out;
}

sub inflater {
    my ($i, $st) = Compress::Raw::Zlib::Inflate->new(
        -WindowBits => -($_[0] || 15), -AppendOutput => 1,
        -ConsumeInput => 1, -Bufsize => 65536);
    die "inflateInit: $st" unless $st == Z_OK;
    return $i;
}

# the tail put back, inflated; undef when zlib objects
sub inflate_msg {
    my ($i, $data) = @_;
    my $in = $data . "\0\0\xff\xff";
    my $out = '';
    my $st = $i->inflate($in, $out);
    return ($st == Z_OK || $st == Z_BUF_ERROR || $st == Z_STREAM_END)
        && length($in) == 0 ? $out : undef;
}

# compressible text of about $n bytes
sub json_like {
    my ($seed, $n) = @_;
    my $s = '';
    my $i = 0;
    while (length $s < $n) {
        $s .= sprintf '{"id":%d,"user":"user%d","score":%d,"tags":["a","b%d"],'
                    . '"ok":true},', $seed + $i, ($seed + $i) % 17,
                      ($seed * 31 + $i * 7) % 1000, $i % 5;
        $i++;
    }
    return substr $s, 0, $n;
}

sub open_ws {
    my %o = @_;
    my $c = WSTest->open6455(%o);
    BAIL_OUT("cannot open a WebSocket: $@") unless $c;
    return $c;
}

sub answer_of {
    my $c = shift;
    return header($c->{handshake}{res}, 'Sec-WebSocket-Extensions');
}

# ---------------------------------------------------------------------
# negotiation: [name, path, offer (undef: none), answer (undef: none)]
my @offers = (
    ['no offer', '/echo', undef, undef],
    ['plain offer', '/echo', 'permessage-deflate', 'permessage-deflate'],
    ["Chromium's offer", '/echo', 'permessage-deflate; client_max_window_bits',
     'permessage-deflate'],
    ['other extension first, parameters', '/echo',
     'x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10; '
     . 'client_no_context_takeover',
     'permessage-deflate; client_no_context_takeover; server_max_window_bits=10'],
    ['server_max_window_bits=8', '/echo',
     'permessage-deflate; server_max_window_bits=8',
     'permessage-deflate; server_max_window_bits=8'],
    ['client_max_window_bits=9, server_no_context_takeover', '/echo',
     'permessage-deflate; client_max_window_bits=9; server_no_context_takeover',
     'permessage-deflate; server_no_context_takeover; client_max_window_bits=9'],
    ['unknown parameter: declined', '/echo', 'permessage-deflate; foo=1', undef],
    ['repeated parameter: declined', '/echo',
     'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
     undef],
    ['bad value: declined', '/echo', 'permessage-deflate; server_max_window_bits=16',
     undef],
    ['bad offer, then a good one', '/echo',
     'permessage-deflate; client_max_window_bits=7, permessage-deflate; '
     . 'client_max_window_bits', 'permessage-deflate'],
    ['WebSocketCompression Off', '/deflate/off', 'permessage-deflate', undef],
    ['WebSocketCompressionNoContextTakeover On', '/deflate/nct',
     'permessage-deflate; client_max_window_bits',
     'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['WebSocketCompressionMaxWindowBits 10', '/deflate/small',
     'permessage-deflate; client_max_window_bits',
     'permessage-deflate; server_max_window_bits=10; client_max_window_bits=10'],
);
for my $t (@offers) {
    my ($name, $path, $offer, $want) = @$t;
    my $c = open_ws(path => $path, extensions => $offer);
    is answer_of($c), $want, "$name: answer " . ($want // 'none');
    # the echo still works; compressed only when negotiated
    my $d = deflater();
    $c->send(defined $want ? ws_text(compress_msg($d, 'hello'), rsv => 4)
                           : ws_text('hello'));
    my $m = $c->read_ws_message(10);
    ok $m && $m->{frames}[0]{rsv} == (defined $want ? 4 : 0),
       "$name: echo " . (defined $want ? 'compressed' : 'not compressed');
}
{
    # two header lines are one list
    my $c = open_ws(extra => [['Sec-WebSocket-Extensions', 'foo; bar'],
                              ['Sec-WebSocket-Extensions', 'permessage-deflate']]);
    is answer_of($c), 'permessage-deflate', 'offer in a second header line';
}
{
    # never on hixie-76
    my $c = WSTest->connect;
    my $r = $c->handshake76(extra => [['Sec-WebSocket-Extensions',
                                       'permessage-deflate']]);
    is $r->{res} && $r->{res}{status}, 101, 'hixie-76 with an offer: 101';
    is $r->{res} && header($r->{res}, 'Sec-WebSocket-Extensions'), undef,
       'hixie-76: no extension';
    is $c->hixie_echo('hi'), 'hi', 'hixie-76: echo';
}

# ---------------------------------------------------------------------
# messages both ways

# Send each message (compressed with $d unless plain), read the echo and
# inflate it with $i (a new inflater each time with fresh => bits);
# returns the number of echoes that matched.  frag => n: every frame of
# the echo at most n bytes, RSV1 on the first only.
sub exchange {
    my ($c, $d, $i, $msgs, %o) = @_;
    my $ok = 0;
    for my $msg (@$msgs) {
        my ($data, $how) = ref $msg ? @$msg : ($msg, 'z');
        if ($how eq 'plain') {
            $c->send(ws_text($data));
        }
        elsif ($how eq 'frag') {
            my $z = compress_msg($d, $data);
            my $k = int(length($z) / 3);
            $c->send(ws_text(substr($z, 0, $k), rsv => 4, fin => 0)
                     . ws_ping('between')
                     . ws_continuation(substr($z, $k, $k), fin => 0)
                     . ws_continuation(substr($z, 2 * $k)));
            my $pong = $c->read_ws_frame(10);
            next unless $pong && $pong->{opcode} == OP_PONG;
        }
        else {
            $c->send(ws_text(compress_msg($d, $data), rsv => 4));
        }
        my $m = $c->read_ws_message(20) or next;
        my @f = @{ $m->{frames} };
        # the server compresses every message it sends, but an empty one
        my $plain = $o{plain_echo} || $data eq '';
        my $framing = $plain ? !grep({ $_->{rsv} } @f)
                             : $f[0]{rsv} == 4
                               && !grep({ $_->{rsv} } @f[1 .. $#f]);
        $framing &&= !grep { length $_->{payload} > $o{frag} } @f if $o{frag};
        my $got = $plain || !$f[0]{rsv} ? $m->{payload}
                : inflate_msg($o{fresh} ? inflater($o{fresh}) : $i,
                              $m->{payload});
        if ($framing && defined $got && $got eq $data) {
            $ok++;
        }
        else {
            diag sprintf 'message of %d bytes: framing %s, echo %s',
                length $data, $framing ? 'ok' : 'WRONG',
                defined $got ? length($got) . ' bytes' : 'does not inflate';
        }
    }
    return $ok;
}

my @msgs = (json_like(1, 1000), json_like(1, 1000), [json_like(2, 3000), 'frag'],
            ['plain text', 'plain'], json_like(3, 65536 + 100), '',
            json_like(4, 1 << 20), "h\xc3\xa9llo");
{
    my $c = open_ws(extensions => 'permessage-deflate');
    is exchange($c, deflater(), inflater(), \@msgs), scalar @msgs,
       'context takeover: every echo inflates to the message';
    $c->send(ws_close(1000));
    my ($close) = $c->read_until_close(5);
    ok $close && !$close->{rsv}, 'the close frame is not compressed';
}
{
    # the echo of a repeated message is tiny with context takeover
    my $c = open_ws(extensions => 'permessage-deflate');
    my $d = deflater();
    my $text = json_like(9, 4000);
    $c->send(ws_text(compress_msg($d, $text), rsv => 4)) for 1 .. 2;
    my $m1 = $c->read_ws_message(10);
    my $m2 = $c->read_ws_message(10);
    ok $m1 && $m2 && length $m2->{payload} < 100
       && length $m1->{payload} > 300,
       'a repeated message takes a few bytes with context takeover'
        or diag 'sizes ' . ($m1 && length $m1->{payload}) . ', '
                . ($m2 && length $m2->{payload});
}
{
    my $c = open_ws(path => '/deflate/nct', extensions => 'permessage-deflate');
    # each message compressed afresh (the server asked the client), each
    # echo inflated afresh
    my $ok = 0;
    for my $data (grep { !ref } @msgs) {
        $ok += exchange($c, deflater(), undef, [$data], fresh => 15);
    }
    is $ok, scalar(grep { !ref } @msgs),
       'no context takeover: every echo inflates alone';
}
{
    my $c = open_ws(path => '/deflate/small',
                    extensions => 'permessage-deflate; client_max_window_bits');
    is exchange($c, deflater(10), inflater(10), \@msgs), scalar @msgs,
       '10-bit windows both ways, memLevel 1, level 1';
}
{
    # repeats 251..511 bytes apart: beyond an 8-bit window unless the
    # server's compressor keeps within it
    my $data = '';
    for (my $d = 251; $d < 512; $d += 13) {
        my $block = join '', map { chr(97 + int rand 26) } 1 .. $d;
        $data .= $block x 2;
    }
    my $c = open_ws(extensions => 'permessage-deflate; server_max_window_bits=8; '
                                . 'client_max_window_bits=8');
    is answer_of($c),
       'permessage-deflate; server_max_window_bits=8; client_max_window_bits=8',
       '8-bit windows: answer';
    is exchange($c, deflater(8), inflater(8), [$data, $data, json_like(5, 5000)]), 3,
       '8-bit windows: the echoes inflate with a 256-byte window';
}
{
    my $c = open_ws(path => '/deflate/frag', extensions => 'permessage-deflate');
    is exchange($c, deflater(), inflater(), [json_like(6, 20000), 'x' x 5000,
                                             json_like(7, 300)], frag => 100), 3,
       'WebSocketFragmentSize 100: compressed echoes in frames of 100';
}
{
    my $c = open_ws(path => '/deflate/level0', extensions => 'permessage-deflate');
    is answer_of($c), 'permessage-deflate', 'level 0: negotiated';
    is exchange($c, deflater(), undef, [json_like(8, 3000), 'abc'], plain_echo => 1), 2,
       'level 0: compressed messages accepted, echoes sent uncompressed';
}
{
    # binary, and a message the client sends in frames of its own
    my $c = open_ws(extensions => 'permessage-deflate');
    my $d = deflater();
    my $bin = join '', map { chr($_ % 251) } 1 .. 70000;
    my $z = compress_msg($d, $bin);
    $c->send(ws_binary(substr($z, 0, 10), rsv => 4, fin => 0));
    Time::HiRes::sleep(0.2);
    $c->send(ws_continuation(substr($z, 10)));
    my $m = $c->read_ws_message(10);
    my $got = $m && inflate_msg(inflater(), $m->{payload});
    ok $m && $m->{opcode} == OP_BINARY && defined $got && $got eq $bin,
       'binary in two frames sent apart: echoed';
}

# ---------------------------------------------------------------------
# errors

sub fails_with {
    my ($name, $bytes, $code, %o) = @_;
    my $c = open_ws(path => $o{path} || '/echo',
                    extensions => exists $o{offer} ? $o{offer} : 'permessage-deflate');
    my $mark = error_log_mark();
    $c->send($bytes);
    my ($close, $before) = $c->read_until_close($o{timeout} || 10);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, $code, "$name: close $code"
        or diag 'received: ' . hexdump(join('', map { $_->{raw} } @$before)
                                       . ($close ? $close->{raw} : ''), 100);
    ok $c->wait_eof(10), "$name: the server closes TCP";
    if ($o{log}) {
        my @l = error_log_wait($mark, $o{log});
        ok scalar(@l), "$name: error log says why" or diag "no line like $o{log}";
    }
    return $c;
}

my $hello = "\xf2\x48\xcd\xc9\xc9\x07\x00";
fails_with('RSV1 without the extension', ws_text($hello, rsv => 4), 1002,
           offer => undef, log => qr/closed \S+ with 1002: reserved bit set/);
fails_with('RSV1 when the offer was declined', ws_text($hello, rsv => 4), 1002,
           offer => 'permessage-deflate; foo');
fails_with('RSV1 on a ping', ws_ping('x', rsv => 4), 1002,
           log => qr/1002: RSV1 set on a control frame/);
fails_with('RSV1 on a close', ws_close(1000, '', rsv => 4), 1002);
fails_with('RSV1 on a continuation',
           ws_text("\xf2\x48", rsv => 4, fin => 0)
           . ws_continuation("\xcd\xc9\xc9\x07\x00", rsv => 4), 1002,
           log => qr/1002: RSV1 set on a continuation frame/);
fails_with('RSV2 with the extension', ws_text('x', rsv => 2), 1002);
fails_with('RSV1+RSV3', ws_text($hello, rsv => 5), 1002);
fails_with('data that does not inflate', ws_text("\xff\xff\xff\xff", rsv => 4), 1007,
           log => qr/1007: compressed message does not inflate/);
fails_with('truncated compressed data',
           ws_text(substr(compress_msg(deflater(), json_like(1, 5000)), 0, -3),
                   rsv => 4), 1007);
fails_with('compressed text of invalid UTF-8',
           ws_text(compress_msg(deflater(), "ok \xed\xa0\x80"), rsv => 4), 1007,
           log => qr/1007: invalid UTF-8/);
fails_with('1M + 1 bytes once inflated on a 1M location',
           ws_binary(compress_msg(deflater(), "\0" x (1024 * 1024 + 1)), rsv => 4),
           1009, path => '/deflate/max1m',
           log => qr/1009: message exceeds WebSocketMaxMessageSize once decompressed/);
{
    my $c = open_ws(path => '/deflate/max1m', extensions => 'permessage-deflate');
    my $data = "\0" x (1024 * 1024);
    $c->send(ws_binary(compress_msg(deflater(), $data), rsv => 4));
    my $m = $c->read_ws_message(20);
    my $got = $m && inflate_msg(inflater(), $m->{payload});
    ok defined $got && $got eq $data, 'exactly 1M once inflated on a 1M location: echoed';
}

# ---------------------------------------------------------------------
# the inflate bomb: 512 MiB of zeros in about 500 KiB

# peak RSS (VmHWM, kB) of every child
sub hwm {
    my %h;
    for my $pid (WSTest::children()) {
        open my $fh, '<', "/proc/$pid/status" or next;
        while (<$fh>) { $h{$pid} = $1 if /^VmHWM:\s+(\d+)/ }
    }
    return \%h;
}

# start counting the peak afresh (VmHWM reset through clear_refs, which
# the server's own user may do); returns whether it could
sub reset_hwm {
    my $all = 1;
    for my $pid (WSTest::children()) {
        open my $fh, '>', "/proc/$pid/clear_refs" or do { $all = 0; next };
        print $fh "5\n" or $all = 0;
        close $fh or $all = 0;
    }
    return $all;
}

sub hwm_growth {
    my ($before, $after) = @_;
    my $worst = 0;
    for my $pid (keys %$after) {
        my $g = $after->{$pid} - ($before->{$pid} // 0);
        $worst = $g if $g > $worst && exists $before->{$pid};
    }
    return $worst;
}

my $bomb = do {
    my $d = deflater(15, level => 9, mem => 9);
    my $zeros = "\0" x (1024 * 1024);
    my $out = '';
    for (1 .. 512) {
        my $in = $zeros;
        $d->deflate($in, $out) == Z_OK or die 'deflate';
    }
    $d->flush($out, Z_SYNC_FLUSH) == Z_OK or die 'flush';
    substr($out, -4) = '';
    $out;
};
ok length($bomb) < 1024 * 1024, sprintf 'the bomb: %d bytes for 512 MiB', length $bomb;
for my $t (['/echo', '16M (default)', 16 * 1024, 40 * 1024],
           ['/deflate/max1m', '1M', 1024, 12 * 1024]) {
    my ($path, $limit, $limit_kb, $bound_kb) = @$t;
    # warm up every child first, so that a child's first connections do
    # not count
    my @warm = map { open_ws(path => $path, extensions => 'permessage-deflate') } 1 .. 4;
    diag 'cannot reset the peak RSS: it counts from the start'
        unless reset_hwm();
    my $before = hwm();
    my $t0 = Time::HiRes::time();
    my $c = fails_with("512 MiB bomb on $path (limit $limit)",
                       ws_binary($bomb, rsv => 4), 1009, path => $path,
                       timeout => 30);
    my $took = Time::HiRes::time() - $t0;
    ok $took < 10, sprintf "bomb on $path: closed in %.2f s", $took;
    my $grew = hwm_growth($before, hwm());
    SKIP: {
        # its quarantine keeps freed memory
        skip 'RSS under AddressSanitizer', 1 if $ENV{WS_SANITIZE};
        ok $grew < $bound_kb,
           "bomb on $path: peak RSS of a child grew by $grew kB (limit "
           . "$limit_kb kB, bound $bound_kb kB)";
    }
    # the other connections are fine
    my $m = exchange($warm[0], deflater(), inflater(), ['still here']);
    is $m, 1, "bomb on $path: other connections still echo";
}
