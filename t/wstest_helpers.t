# Self-test of t/lib/WSTest.pm's framing helpers against the examples of
# RFC 6455 and the hixie-76 draft (no server needed).
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use WSTest qw(:all);

plan tests => 32;

sub hx { unpack 'H*', $_[0] }

# RFC 6455 section 5.7 examples
is hx(ws_text('Hello', mask => 0)), '810548656c6c6f', 'unmasked text "Hello"';
is hx(ws_text('Hello', mask_key => "\x37\xfa\x21\x3d")),
   '818537fa213d7f9f4d5158', 'masked text "Hello"';
is hx(ws_text('Hel', fin => 0, mask => 0) . ws_continuation('lo', mask => 0)),
   '010348656c80026c6f', 'fragmented unmasked text';
is hx(ws_ping('Hello', mask => 0)), '890548656c6c6f', 'unmasked ping';
is hx(ws_pong('Hello', mask_key => "\x37\xfa\x21\x3d")),
   '8a8537fa213d7f9f4d5158', 'masked pong';
is hx(substr ws_binary("\0" x 256, mask => 0), 0, 4), '827e0100',
   '256-byte binary: 16-bit length';
is hx(substr ws_binary("\0" x 65536, mask => 0), 0, 10), '827f0000000000010000',
   '64 KiB binary: 64-bit length';
is hx(substr ws_text('x', mask => 0, len_bits => 64), 0, 10),
   '817f0000000000000001', 'forced non-minimal 64-bit length';
is hx(substr ws_text('x', mask => 0, len_bits => 16), 0, 4),
   '817e0001', 'forced non-minimal 16-bit length';
is hx(ws_frame(0x3, '', rsv => 4, fin => 0, mask => 0)), '4300',
   'reserved opcode, RSV1, no FIN';
is hx(ws_close(1000, 'bye', mask => 0)), '880503e8627965', 'close 1000 "bye"';
is hx(ws_close(undef, undef, mask => 0)), '8800', 'close without a code';
is_deeply [ws_parse_close("\x03\xe8bye")], [1000, 'bye'], 'parse close payload';

# parse what we build, all length forms, masked and not
for my $len (0, 1, 125, 126, 65535, 65536, 70000) {
    my $p = join '', map { chr(($_ * 31) % 256) } 1 .. $len;
    my $buf = ws_binary($p) . 'tail';
    my $f = ws_parse_frame(\$buf);
    ok $f && $f->{payload} eq $p && $f->{masked} && $f->{fin}
       && $f->{opcode} == 2 && $buf eq 'tail', "round trip, $len bytes";
}
{
    my $whole = ws_text('partial', mask => 0);
    my $buf = substr $whole, 0, 5;
    is ws_parse_frame(\$buf), undef, 'incomplete frame: undef';
    is length $buf, 5, '... and nothing consumed';
    my $f = ws_parse_frame(\$whole);
    is $f->{len_bits}, 7, 'len_bits reported';
}

# handshake helpers
is ws_accept('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
   'Sec-WebSocket-Accept of the RFC example key';
my ($req, $used) = rfc6455_request(host => 'h:1', key => 'dGhlIHNhbXBsZSBub25jZQ==',
                                   protocol => 'chat');
like $req, qr{^GET /echo HTTP/1\.1\r\n.*Sec-WebSocket-Version: 13\r\n.*\r\n\r\n\z}s,
     'RFC 6455 request head';
is $used->{accept}, 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=', 'expected accept returned';

# hixie helpers
is hixie76_answer('4 @1  46546xW%0l 1 5', '12998 5 Y3 1  .P00', '^n:ds[4U'),
   "8jKS'y:G*Co,Wxa-", 'draft-76 example answer';
is hx(hixie_varint(0)), '00', 'varint 0';
is hx(hixie_varint(127)), '7f', 'varint 127';
is hx(hixie_varint(128)), '8100', 'varint 128';
is hx(hixie_varint(16384)), '818000', 'varint 16384';
{
    my $ok = 1;
    for (1 .. 50) {
        my $k = hixie76_key();
        (my $d = $k) =~ s/\D//g;
        my $sp = () = $k =~ / /g;
        $ok = 0 unless $sp && $d % $sp == 0 && $d <= 4294967295
            && $k !~ /^ / && $k !~ / $/;
    }
    ok $ok, 'hixie76_key makes valid keys';
}
