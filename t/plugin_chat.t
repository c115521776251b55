# The chat plugin: join/leave notices, every message to every client of
# /chat (sender included; binary skips hixie clients), clients coming and
# going while others broadcast, and a client that stops reading: it is
# closed with 1008 (/chat has WebSocketMaxPendingBytes 64K) while the
# others carry on unaffected.
#
# The chat publishes to a topic (the request path), which reaches every
# child of the server: clients hear each other whichever child serves
# them (t/pubsub.t checks that across children and servers).
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 25;

my $joined = qr/^\* \S+ joined$/;
my $left   = qr/^\* \S+ left$/;

sub chat_client {
    my $c = WSTest->open6455(path => '/chat') or die $@;
    return $c;
}

# joiner([$open]): a new client ($open->() returns one) whose own join
# notice was read
sub joiner {
    my ($open) = @_;
    $open ||= sub {
        my $c = chat_client();
        my $m = next_text($c) // '';
        die "no join notice: $m" unless $m =~ /joined/;
        return $c;
    };
    return $open->();
}

# next message (opcode, payload) or () on timeout/EOF
sub next_msg {
    my ($c, $timeout) = @_;
    my $m = $c->read_ws_message($timeout // 5) or return;
    return ($m->{opcode}, $m->{payload});
}

sub next_text {
    my ($op, $p) = next_msg(@_);
    return defined $op && $op == OP_TEXT ? $p : undef;
}

# ---------------------------------------------------------------------
# notices and broadcast
{
    my $a = chat_client();
    like next_text($a) // '', $joined, 'a newcomer sees its own join';
    my $b = joiner();
    like next_text($a) // '', $joined, 'the first sees the second join';

    # a hixie-76 client: text yes, binary no
    my ($h, $status, $hjoin);
    $h = joiner(sub {
        my $c = WSTest->connect;
        my $r = $c->handshake76(path => '/chat');
        $status = $r->{res} && $r->{res}{status};
        my $f = $c->read_hixie_frame(5);
        $hjoin = $f && $f->{data};
        return $c;
    });
    is $status, 101, 'hixie-76 client joins';
    like $hjoin, $joined, 'hixie client sees its join';
    my @notices = map { next_text($_) // '' } $a, $b;
    ok !(grep { !/$joined/ } @notices), 'and so do the others'
        or diag "got: @notices";

    $b->send(ws_text('hello, all'));
    is next_text($a), 'hello, all', 'text reaches the others';
    is next_text($b), 'hello, all', 'and the sender';
    my $f = $h->read_hixie_frame(5);
    is $f && $f->{data}, 'hello, all', 'and the hixie client';

    my $bin = join '', map { chr } 0 .. 255;
    $a->send(ws_binary($bin));
    $a->send(ws_text('after binary'));
    is_deeply [next_msg($b)], [OP_BINARY, $bin], 'binary is broadcast as binary';
    is_deeply [next_msg($b)], [OP_TEXT, 'after binary'], 'in order';
    next_msg($a) for 1 .. 2;
    $f = $h->read_hixie_frame(5);
    is $f && $f->{data}, 'after binary', 'hixie client skips the binary';

    $h->send(hixie_text_frame('from hixie'));
    is next_text($a), 'from hixie', 'hixie client broadcasts text';
    next_text($b);

    $h->close;
    like next_text($a) // '', $left, 'an abort is announced as left';
    $b->send(ws_close(1000));
    like next_text($a) // '', $left, 'a close is announced as left';
    $a->send(ws_close(1000));
}

# ---------------------------------------------------------------------
# $senders send $rounds messages each, in lock step (each round ends when
# every reader has seen every sender's message of the round); $each->($i)
# runs between rounds.  Returns { reader index => [tags in order] }.
sub lockstep {
    my (%o) = @_;
    my ($senders, $readers) = @o{qw(senders readers)};
    my $pad = 'x' x ($o{size} // 100);
    my %got;
    for my $i (1 .. $o{rounds}) {
        my %want;
        for my $s (0 .. $#$senders) {
            $senders->[$s]->send(ws_text("$s:$i:$pad")) or return \%got;
            $want{"$s:$i"} = 1;
        }
        for my $r (0 .. $#$readers) {
            my %need = %want;
            while (%need) {
                my $p = next_text($readers->[$r], 10);
                return \%got unless defined $p;
                next if $p =~ /^\* /;
                my ($tag) = $p =~ /^(\d+:\d+):/ or next;
                delete $need{$tag};
                push @{ $got{$r} }, $tag;
            }
        }
        $o{each}->($i) if $o{each};
    }
    return \%got;
}

# every sender's tags 1..$rounds, in order, in each reader's list
sub complete {
    my ($got, $nsenders, $nreaders, $rounds) = @_;
    for my $r (0 .. $nreaders - 1) {
        my %per;
        for (@{ $got->{$r} || [] }) {
            my ($s, $i) = split /:/;
            push @{ $per{$s} }, $i;
        }
        for my $s (0 .. $nsenders - 1) {
            return 0 unless "@{ $per{$s} || [] }" eq join ' ', 1 .. $rounds;
        }
    }
    return 1;
}

# ---------------------------------------------------------------------
# clients come and go while two others broadcast
{
    my @c = (chat_client());
    next_text($c[0]);
    push @c, joiner();
    my ($churned, $churn_ok) = (0, 1);
    my $got = lockstep(
        senders => \@c, readers => \@c, rounds => 200, size => 2000,
        each => sub {
            my $i = shift;
            return if $i % 10;
            my $d = WSTest->open6455(path => '/chat');
            unless ($d) { $churn_ok = 0; return }
            $d->send(ws_text("a passer-by")) if $i % 20;   # mid-stream
            if ($i % 30) { $d->close }                   # abort
            else { $d->send(ws_close(1000)) }
            $churned++;
        },
    );
    ok $churn_ok && $churned == 20, "$churned clients came and went";
    ok complete($got, 2, 2, 200),
       'both steady clients got all 400 messages, each sender in order';
    $_->send(ws_close(1000)) for @c;
}

# ---------------------------------------------------------------------
# a client that stops reading
{
    my $mark = error_log_mark();
    my @c = (chat_client());
    next_text($c[0]);
    push @c, joiner() for 1 .. 2;
    # (no tiny SO_RCVBUF here: below the loopback MSS the window never
    # reopens and the server's data would trickle in through zero-window
    # probes once the client reads again)
    my $stalled = joiner();

    # enough to fill the server's socket send buffer (at most tcp_wmem's
    # maximum) and then the 64K queue several times over
    my $wmem = 4 * 1024 * 1024;
    if (open my $fh, '<', '/proc/sys/net/ipv4/tcp_wmem') {
        my @v = split ' ', scalar <$fh>;
        $wmem = $v[2] if $v[2];
    }
    $wmem = 16 * 1024 * 1024 if $wmem > 16 * 1024 * 1024;
    my $size = 16 * 1024;
    my $rounds = int((1.5 * $wmem + 2 * 1024 * 1024) / (2 * $size)) + 1;

    my $t0 = Time::HiRes::time();
    my $got = lockstep(senders => [@c[0, 1]], readers => \@c,
                       rounds => $rounds, size => $size);
    my $took = Time::HiRes::time() - $t0;
    ok complete($got, 2, 3, $rounds), sprintf('%d x 2 messages of 16 KiB '
       . 'reached all 3 reading clients in %.1f s despite the stalled one',
       $rounds, $took);

    # now the stalled client reads: a prefix of the stream, then 1008
    my ($close, $before) = $stalled->read_until_close(30);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, 1008, 'the stalled client was closed with 1008'
        or diag sprintf 'got %d frames, eof %d', scalar @$before,
                        $stalled->eof;
    my $data = grep { $_->{payload} =~ /^\d+:\d+:/ } @$before;
    ok $data < 2 * $rounds,
       "it missed messages (got $data of " . 2 * $rounds . ')';
    my @log = error_log_wait($mark, qr/closing \/chat with 1008/);
    is scalar(@log), 1, 'error_log says why';
    $stalled->close;

    # the others still chat, and hear that it left
    $c[2]->send(ws_text('still here'));
    my ($saw_left, $saw_msg) = (0, 0);
    while (defined(my $p = next_text($c[0], 5))) {
        $saw_left = 1 if $p =~ $left;
        $saw_msg = 1 if $p eq 'still here';
        last if $saw_left && $saw_msg;
    }
    ok $saw_left, 'the others see it leave';
    ok $saw_msg, 'and keep chatting';
    $_->send(ws_close(1000)) for @c;
}

# ---------------------------------------------------------------------
{
    my $mark = error_log_mark();
    my $c = chat_client();
    like next_text($c) // '', $joined, 'the location still works';
    $c->send(ws_close(1000));
    my ($close) = $c->read_until_close(5);
    ok $close, 'and closes normally';
    my @bad = crash_lines($mark);
    is scalar(@bad), 0, 'no child crashed' or diag join "\n", @bad;
}
