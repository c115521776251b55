# The exec plugin (modules/exec): a process per WebSocket, websocketd
# inside httpd.  Lines and binary mode through cat (a 300,000-byte line as
# one message, 1 MiB byte for byte), the program's arguments (no shell),
# directory, process group, signals, descriptors and user; the CGI
# environment (query, headers, remote address, subprotocol, PassEnv /
# SetEnv, nothing else of httpd's, HTTPS under wss://, REMOTE_USER under
# Basic authentication); stderr in the error log; text that is not UTF-8;
# a program that exits (1000 / 1011 after all it wrote), one that ignores
# SIGTERM (SIGKILL), one that floods stdout while the client does not
# read (the program is held, httpd's memory bounded, nothing lost), one
# that never reads stdin (the client is held); MaxProcesses (503, then
# free again); 200 connections opened and dropped (no process, zombie or
# descriptor left); "httpd -t" on bad options; last a graceful restart
# (every program ends, even one that ignores SIGTERM with a CloseTimeout
# of 60 s).
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Cwd ();
use Encode ();
use IO::Select ();
use MIME::Base64 ();
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 127;

my $t_dir = Cwd::realpath($FindBin::Bin);

# ---------------------------------------------------------------------
# helpers

sub ws {
    my ($path, %o) = @_;
    my $c = WSTest->open6455(path => $path, %o);
    diag "$path: $@" unless $c;
    return $c;
}

# next message as [opcode, payload] ([] on EOF / timeout)
sub msg {
    my ($c, $timeout) = @_;
    my $m = $c && $c->read_ws_message($timeout // 5) or return [];
    return [$m->{opcode}, $m->{payload}];
}

sub text { my $m = msg(@_); return @$m && $m->[0] == OP_TEXT ? $m->[1] : undef }

# (code, reason, [frames before]) of the server's close
sub closed {
    my ($c, $timeout) = @_;
    my ($f, $before) = $c->read_until_close($timeout // 5);
    my $i = ws_close_frame_info($f);
    return ($i && $i->{code}, $i && $i->{reason}, $before);
}

# "pid N" from a helper
sub helper_pid {
    my $c = shift;
    my $l = text($c) // '';
    return $l =~ /^pid (\d+)$/ ? $1 : undef;
}

# state, ppid and process group from /proc/PID/stat ( () when gone)
sub proc_stat {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return;
    my $s = <$fh> // return;
    return $s =~ /\) (\S) (\d+) (\d+) / ? ($1, $2, $3) : ();
}

sub proc_status_field {
    my ($pid, $name) = @_;
    open my $fh, '<', "/proc/$pid/status" or return;
    while (<$fh>) { return $1 if /^\Q$name\E:\s+(.*?)\s*$/ }
    return;
}

sub gone { return !-e "/proc/$_[0]" }

# wait until every pid is gone (neither running nor a zombie); returns
# the ones still there after $timeout seconds
sub wait_gone {
    my ($timeout, @pids) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    while (1) {
        my @left = grep { !gone($_) } @pids;
        return @left if !@left || Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
}

# processes whose parent is an httpd child: pid => comm
sub exec_procs {
    my %kids = map { $_ => 1 } children();
    my %p;
    opendir my $d, '/proc' or return {};
    for my $pid (grep { /^\d+$/ } readdir $d) {
        my (undef, $ppid) = proc_stat($pid) or next;
        next unless $kids{$ppid};
        open my $fh, '<', "/proc/$pid/comm" or next;
        chomp(my $comm = <$fh> // '');
        $p{$pid} = $comm;
    }
    return \%p;
}

# new cat processes since the snapshot $before
sub new_cats {
    my $before = shift;
    my $now = exec_procs();
    return grep { $now->{$_} eq 'cat' && !$before->{$_} } keys %$now;
}

# Send $data as messages of $chunk bytes ($frame makes the frames) while
# reading what comes back ($unframe gets the bytes of a message), both
# non-blocking, until as much came back or 60 s passed.
sub transfer {
    my ($c, $data, $chunk, $frame, $unframe) = @_;
    my $sock = $c->sock;
    $sock->blocking(0);
    my ($out, $raw, $in, $off) = ('', $c->buffered, '', 0);
    my $sel = IO::Select->new($sock);
    my $deadline = Time::HiRes::time() + 60;
    while (length $in < length $data && Time::HiRes::time() < $deadline) {
        if (length $out < 65536 && $off < length $data) {
            $out .= $frame->(substr $data, $off, $chunk);
            $off += $chunk;
        }
        my ($r, $w) = IO::Select->select($sel, length $out ? $sel : undef,
                                         undef, 1);
        if ($w && @$w) {
            my $n = syswrite $sock, $out, 65536;
            substr($out, 0, $n, '') if $n;
        }
        if ($r && @$r) {
            my $n = sysread $sock, $raw, 262144, length $raw;
            last if defined $n && $n == 0;
            while (my $f = ws_parse_frame(\$raw)) {
                return $in . "[opcode $f->{opcode}]" if $f->{opcode} >= 8;
                $in .= $unframe->($f);
            }
        }
    }
    $sock->blocking(1);
    return $in;
}

# ---------------------------------------------------------------------
# lines mode through cat (9 tests)
{
    my $before = exec_procs();
    my $c = ws('/exec-cat');
    ok $c, '/exec-cat: a WebSocket to cat';
    $c->send(ws_text('hello'));
    is text($c), 'hello', 'a line comes back as a text message';
    my $u = Encode::encode('UTF-8', "gr\x{fc}\x{df} \x{1F600} \x{5b89}");
    $c->send(ws_text($u));
    is hexdump(text($c)), hexdump($u), 'UTF-8 text comes back as it was';
    $c->send(ws_text("two\nlines"));
    is_deeply [text($c), text($c)], ['two', 'lines'],
              'a message holding a newline comes back as two lines';
    $c->send(ws_text(''));
    is text($c), '', 'an empty message is an empty line';
    my $long = join '', map { chr(0x61 + $_ % 26) } 1 .. 300_000;
    $c->send(ws_text($long));
    my $m = $c->read_ws_message(10);
    ok $m && $m->{opcode} == OP_TEXT && $m->{payload} eq $long,
       'a 300,000-byte line comes back as one message'
        or diag $m ? "opcode $m->{opcode}, " . length($m->{payload})
                     . ' bytes' : 'nothing';
    ok $m && @{ $m->{frames} } > 1,
       sprintf 'in fragments as cat wrote it (%d frames)',
               $m ? scalar @{ $m->{frames} } : 0;
    my ($cat) = new_cats($before);
    $c->send(ws_close(1000));
    my ($code) = closed($c);
    is $code, 1000, 'the client closes: 1000 answered';
    # cat ends on its stdin's end only: well before CloseTimeout (5 s)
    my @left = $cat ? wait_gone(2, $cat) : ('no cat found');
    ok !@left, 'the client closing closes stdin: cat ends at once';
}

# ---------------------------------------------------------------------
# the process (12 tests)
my $httpd_uid;
{
    my $c = ws('/exec-helper?mode=argv');
    is text($c), "two words|\$HOME|*",
       'arguments as configured, without a shell';
    $c = ws('/exec-helper?mode=cwd');
    is text($c), Cwd::realpath("$t_dir/conf"), 'runs in Directory';

    $c = ws('/exec-helper');
    my $pid = helper_pid($c);
    ok $pid, 'the helper says its pid';
    $pid //= 0;
    my ($state, $ppid, $pgrp) = proc_stat($pid);
    ok $ppid && grep({ $_ == $ppid } children()),
       'its parent is an httpd child';
    is $pgrp, $pid, 'it leads a process group of its own';
    is proc_status_field($pid, 'SigBlk'), '0000000000000000',
       'no signal blocked (httpd threads block some)';
    # the low 32 bits of the mask: signals 1 to 32
    my $ignored = hex(substr(proc_status_field($pid, 'SigIgn') // 'ffff', -8));
    is $ignored & ((1 << 12) | (1 << 24)), 0,
       'SIGPIPE and SIGXFSZ not ignored (httpd ignores them)';
    opendir my $d, "/proc/$pid/fd";
    my @fds = sort { $a <=> $b } grep { /^\d+$/ } readdir $d;
    is "@fds", '0 1 2', 'descriptors 0, 1 and 2 only: nothing of httpd';
    my @links = map { readlink "/proc/$pid/fd/$_" // '' } 0 .. 2;
    is scalar(grep { /^pipe:/ } @links), 3, 'stdin, stdout, stderr: pipes'
        or diag "@links";
    ($httpd_uid) = split ' ', proc_status_field($ppid // 0, 'Uid') // '';
    my ($uid) = split ' ', proc_status_field($pid, 'Uid') // '';
    ok defined $uid && $uid eq ($httpd_uid // ''), "runs as httpd's user";
    $c->send(ws_text('ping'));
    is text($c), 'echo: ping', 'and talks';
    $c->send(ws_close(1000));
    closed($c);
    ok !wait_gone(5, $pid), 'ends after the close';
}

# ---------------------------------------------------------------------
# the environment (28 tests)
sub env_of {
    my ($c) = @_;
    my %env;
    while (defined(my $l = text($c))) {
        last if $l eq 'END';
        $env{$1} = $2 if $l =~ /^([^=]+)=(.*)$/s;
    }
    return \%env;
}
{
    my $c = WSTest->connect;
    my $r = $c->handshake6455(
        path => '/exec-helper/extra/path?mode=env&x=1',
        protocol => 'foo, chat.v1, other.v1',
        extra => [['X-Exec-Test', 'abc'],
                  ['Authorization', 'Basic ' . MIME::Base64::encode_base64('u:p', '')]]);
    is $r->{res} && $r->{res}{status}, 101, 'env: 101';
    is header($r->{res} || {}, 'Sec-WebSocket-Protocol'), 'chat.v1',
       'the first offered of Subprotocols is chosen';
    my $env = env_of($c);
    my ($host, $port) = server_hostport();
    is $env->{QUERY_STRING}, 'mode=env&x=1', 'QUERY_STRING';
    is $env->{REQUEST_URI}, '/exec-helper/extra/path?mode=env&x=1',
       'REQUEST_URI';
    is $env->{SCRIPT_NAME}, '/exec-helper', 'SCRIPT_NAME';
    is $env->{PATH_INFO}, '/extra/path', 'PATH_INFO';
    is $env->{REQUEST_METHOD}, 'GET', 'REQUEST_METHOD';
    is $env->{GATEWAY_INTERFACE}, 'CGI/1.1', 'GATEWAY_INTERFACE';
    is $env->{REMOTE_ADDR}, '127.0.0.1', 'REMOTE_ADDR';
    is $env->{REMOTE_PORT}, $c->sock->sockport, 'REMOTE_PORT: our port';
    is $env->{SERVER_PORT}, $port, 'SERVER_PORT';
    ok defined $env->{SERVER_NAME}, 'SERVER_NAME';
    is $env->{HTTP_X_EXEC_TEST}, 'abc', 'a request header as HTTP_*';
    is $env->{HTTP_HOST}, "$host:$port", 'HTTP_HOST';
    ok !exists $env->{HTTP_AUTHORIZATION}, 'but not Authorization';
    is $env->{WEBSOCKET_PROTOCOL}, 'chat.v1', 'WEBSOCKET_PROTOCOL';
    ok !exists $env->{HTTPS}, 'no HTTPS over ws://';
    ok !exists $env->{REMOTE_USER}, 'no REMOTE_USER without authentication';
    is $env->{EXEC_GREETING}, 'hello world', 'SetEnv (a value with a space)';
    is $env->{EXEC_EMPTY}, '', 'SetEnv (an empty value)';
    is $env->{APACHE_RUN_DIR}, $ENV{APACHE_RUN_DIR},
       'PassEnv passes a variable of httpd';
    ok !exists $env->{EXEC_TEST_UNSET}, 'PassEnv of an unset one: absent';
    my @httpd_only = grep { exists $env->{$_} }
                     qw(APACHE_LOG_DIR APACHE_LOCK_DIR HOME USER LANG);
    is "@httpd_only", '', "nothing else of httpd's environment";
    is $env->{PATH}, '/usr/local/bin:/usr/bin:/bin', 'a PATH of its own';
}
{
    my $c = ws('/exec-helper?mode=env', ssl => 1);
    my $env = $c ? env_of($c) : {};
    my (undef, $ssl_port) = server_hostport('mod_ssl');
    is $env->{HTTPS}, 'on', 'wss://: HTTPS=on';
    is $env->{SERVER_PORT}, $ssl_port, 'wss://: SERVER_PORT of the TLS vhost';
}
SKIP: {
    my ($c0, $res0) = send_expecting_status(
        scalar(rfc6455_request(host => join(':', server_hostport()),
                               path => '/exec-auth?mode=env')),
        401, '/exec-auth without credentials');
    skip 'no Basic authentication (mod_auth_basic, mod_authn_file)', 1
        unless $res0 && $res0->{status} == 401;
    my $c = ws('/exec-auth?mode=env', extra => [['Authorization', 'Basic '
        . MIME::Base64::encode_base64('alice:secret', '')]]);
    my $env = $c ? env_of($c) : {};
    is "$env->{REMOTE_USER}/$env->{AUTH_TYPE}", 'alice/Basic',
       'REMOTE_USER and AUTH_TYPE once authenticated';
}

# ---------------------------------------------------------------------
# stderr, text that is not UTF-8, exits (11 tests)
{
    my $mark = error_log_mark();
    my $c = ws('/exec-helper?mode=stderr');
    helper_pid($c);
    my @l = error_log_wait($mark, qr/helper: something on stderr/);
    like $l[0] // '', qr{exec: /exec-helper \(client 127\.0\.0\.1\): stderr: helper: something on stderr},
         'a stderr line goes to the error log with the URI and the client';
}
{
    my $c = ws('/exec-helper?mode=badutf8');
    is hexdump(text($c)), hexdump("\xEF\xBF\xBD\xEF\xBF\xBDok"),
       'bytes that are not UTF-8 become U+FFFD';
    is hexdump(text($c)), hexdump("caf\xC3\xA9 \xE2\x82\xAC"),
       'UTF-8 stays as it is';
}
for my $case ([0, 1000, 'exit status 0'], [3, 1011, 'exit status 3']) {
    my ($status, $want, $reason) = @$case;
    my $mark = error_log_mark();
    my $c = ws("/exec-helper?mode=exit$status");
    my ($code, $why, $before) = closed($c, 10);
    my @lines = map { $_->{payload} } @$before;
    is scalar(@lines), 1001,
       "exit $status: all 1001 lines it wrote came before the close";
    is $lines[-1], 'bye', "exit $status: the last one last";
    is $code, $want, "exit $status: close $want";
    is $why, $reason, "exit $status: reason \"$reason\"";
    ok scalar(error_log_wait($mark, qr/exec: .*pid \d+: \Q$reason\E/)),
       "exit $status: logged";
}

# ---------------------------------------------------------------------
# a program that ignores SIGTERM (5 tests)
{
    my $mark = error_log_mark();
    my $c = ws('/exec-helper?mode=ignore-term');
    my $pid = helper_pid($c) // 0;
    ok $pid, 'ignore-term: started';
    $c->send(ws_close(1000));
    closed($c);
    Time::HiRes::sleep(0.5);
    my ($state) = proc_stat($pid);
    ok $state && $state ne 'Z', 'still running 0.5 s after the close '
       . '(stdin closed; CloseTimeout 1 s)';
    ok !wait_gone(6, $pid), 'gone within 6 s, not a zombie either';
    my @sig = error_log_since($mark, qr/pid $pid is still running/);
    like $sig[0] // '', qr/SIGTERM/, 'SIGTERM first';
    like $sig[1] // '', qr/SIGKILL/, 'then SIGKILL';
}

# ---------------------------------------------------------------------
# a program that floods stdout while the client does not read (6 tests)
{
    my $c = ws('/exec-helper?mode=flood');
    my $pid = helper_pid($c) // 0;
    ok $pid, 'flood: started';
    my $s0 = snapshot();
    Time::HiRes::sleep(1);
    my $t0 = proc_cpu($pid);
    Time::HiRes::sleep(2);
    my $t1 = proc_cpu($pid);
    my $s1 = snapshot();
    my ($state) = proc_stat($pid);
    ok defined $t0 && defined $t1 && $t1 - $t0 < 0.3,
       sprintf 'the program is held while the client reads nothing '
             . '(%.2f s of CPU in 2 s, state %s)', ($t1 // 0) - ($t0 // 0),
               $state // '?';
    SKIP: {
        skip 'RSS under AddressSanitizer', 1 if $ENV{WS_SANITIZE};
        my $growth = rss_growth($s0, $s1);
        ok $growth < 8192, "httpd's memory stays bounded (+$growth kB)"
            or diag describe($s0) . ' -> ' . describe($s1);
    }
    my ($n, $ok, $other) = (0, 1, undef);
    while ($n < 20000) {
        my $m = msg($c, 5);
        if (!@$m || $m->[0] != OP_TEXT) { $other = $m; last }
        $n++;
        if ($m->[1] ne "line $n") { $ok = 0; diag "got $m->[1] for $n"; last }
    }
    is $n, 20000, 'then 20,000 lines come';
    ok $ok, 'in order, none lost';
    ok !defined $other, 'and no close (no 1008 for a slow reader)'
        or diag 'opcode ' . ($other->[0] // 'none');
    undef $c;
    ok !wait_gone(5, $pid), 'the client gone, the program ends';
}
sub proc_cpu {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return;
    my @f = split ' ', (<$fh> // '') =~ s/^.*\) //r;
    return @f > 12 ? ($f[11] + $f[12]) / 100 : undef;   # utime + stime
}

# ---------------------------------------------------------------------
# a program that never reads stdin (7 tests): on the exec_timeout vhost
# (Timeout 4)
{
    my $mark = error_log_mark();
    my $c = ws('/exec-helper?mode=no-read', vhost => 'exec_timeout');
    my $pid = helper_pid($c) // 0;
    ok $pid, 'no-read: started';
    my $s0 = snapshot();
    my $sock = $c->sock;
    $sock->blocking(0);
    my $frame = ws_text('x' x 65535);
    my ($written, $pending, $last) = (0, '', Time::HiRes::time());
    my $sel = IO::Select->new($sock);
    while ($written < 48 * 1048576 && Time::HiRes::time() - $last < 1) {
        $pending = $frame if $pending eq '';
        next unless $sel->can_write(0.2);
        my $n = syswrite $sock, $pending;
        next unless $n;
        substr($pending, 0, $n, '');
        $written += $n;
        $last = Time::HiRes::time();
    }
    $sock->blocking(1);
    my $s1 = snapshot();
    ok $written < 32 * 1048576, sprintf 'the client is held: it could '
       . 'write %.1f MB of 48 MB before its writes stalled',
         $written / 1048576;
    SKIP: {
        skip 'RSS under AddressSanitizer', 1 if $ENV{WS_SANITIZE};
        my $growth = rss_growth($s0, $s1);
        ok $growth < 16384, "httpd's memory stays bounded (+$growth kB)";
    }
    my ($code, $reason) = closed($c, 10);
    is $code, 1011, 'after Timeout without stdin taking anything: 1011';
    is $reason, 'the program does not read', 'with a reason';
    ok scalar(error_log_since($mark, qr/exec: .*took nothing on stdin for 4 s/)),
       'logged';
    $c->send($pending . ws_close(1000));
    ok !wait_gone(5, $pid), 'the program ends (stdin closed, SIGTERM)';
}

# ---------------------------------------------------------------------
# binary mode through cat (3 tests)
{
    my $c = ws('/exec-bin');
    my $data = join '', map { pack 'N*', map { int rand 4294967296 } 1 .. 16384 }
                        1 .. 16;                               # 1 MiB
    my $got = transfer($c, $data, 65536, \&ws_binary,
                       sub { $_[0]{opcode} == OP_BINARY ? $_[0]{payload}
                                                        : "[opcode $_[0]{opcode}]" });
    is length $got, length $data, '1 MiB through cat in binary messages';
    ok $got eq $data, 'byte for byte';
    my $h = WSTest->connect;
    my $r = $h->handshake76(path => '/exec-bin');
    is $r->{res} && $r->{res}{status}, 400,
       'binary mode refuses a hixie-76 client (no binary messages)';
}

# ---------------------------------------------------------------------
# MaxProcesses (4 tests)
{
    my @c = map { ws('/exec-max') } 1 .. 2;
    is scalar(grep { defined } @c), 2, 'MaxProcesses 2: two WebSockets';
    my ($x) = send_expecting_status(
        scalar(rfc6455_request(host => join(':', server_hostport()),
                               path => '/exec-max')),
        503, 'a third one while both run');
    $c[0]->send(ws_close(1000));
    closed($c[0]);
    my ($third, $deadline) = (undef, Time::HiRes::time() + 5);
    while (!$third && Time::HiRes::time() < $deadline) {
        $third = WSTest->open6455(path => '/exec-max');
        Time::HiRes::sleep(0.1) unless $third;
    }
    ok $third, 'once one has ended, a new one gets its place';
    $third->send(ws_text('still cat')) if $third;
    is $third && text($third), 'still cat', 'and works';
}

# ---------------------------------------------------------------------
# 200 connections opened and dropped (6 tests)
{
    my $before = exec_procs();
    my $s0 = snapshot();
    opendir my $d, '/proc/self/fd';
    my $own0 = grep { /^\d+$/ } readdir $d;
    my @c = grep { defined } map { WSTest->open6455(path => '/exec-cat') }
                                 1 .. 200;
    is scalar(@c), 200, '200 WebSockets to cat';
    my @cats;
    my $deadline = Time::HiRes::time() + 10;
    while ((@cats = new_cats($before)) < 200
           && Time::HiRes::time() < $deadline) {
        Time::HiRes::sleep(0.1);
    }
    is scalar(@cats), 200, '200 cat processes';
    $_->close for @c;                 # dropped: no closing handshake
    @c = ();
    my @left = wait_gone(10, @cats);
    is scalar(@left), 0, 'dropped: every cat ends and is reaped'
        or diag 'left: ' . join ', ', map { "$_ (" . ((proc_stat($_))[0] // '?') . ')' } @left;
    Time::HiRes::sleep(0.5);
    my $s1 = snapshot();
    my $fds = fd_growth($s0, $s1);
    ok $fds <= 4, "no descriptor left in httpd (+$fds)"
        or diag describe($s0) . ' -> ' . describe($s1);
    rewinddir $d;
    my $own1 = grep { /^\d+$/ } readdir $d;
    is $own1, $own0, "none left in this test either ($own1)";
    my @zombies = grep { ((proc_stat($_))[0] // '') eq 'Z' }
                  keys %{ exec_procs() };
    is "@zombies", '', 'no zombie under httpd';
}

# ---------------------------------------------------------------------
# "httpd -t" on bad options (2 tests each)
{
    my $serverroot = Apache::Test::vars('serverroot');
    my $dir = Apache::Test::vars('t_logs') . '/exec-errors';
    mkdir $dir;
    my $plain = "$dir/not-executable";
    open my $fh, '>', $plain or die "$plain: $!";
    print $fh "#!/bin/sh\n";
    close $fh;
    chmod 0644, $plain;
    my $mpm = loaded_module('mpm_event_module');
    my $httpd = Apache::Test::vars('httpd');
    my @cases = (
        ['a good location', 'Command cat', undef],
        ['no Command', 'Mode lines', qr/exec: missing "WebSocketOption Command program"/],
        ['an empty Command', 'Command "   "', qr/exec: WebSocketOption Command is empty/],
        ['an unknown option', "Command cat\nWebSocketOption Colour blue",
         qr/exec: unknown WebSocketOption Colour/],
        ['a bad Mode', "Command cat\nWebSocketOption Mode text",
         qr/exec: WebSocketOption Mode "text" is not lines or binary/],
        ['a bad MaxProcesses', "Command cat\nWebSocketOption MaxProcesses -1",
         qr/MaxProcesses "-1" is not a number/],
        ['a bad CloseTimeout', "Command cat\nWebSocketOption CloseTimeout soon",
         qr/CloseTimeout "soon" is not a number of seconds/],
        ['a missing program', 'Command /nonexistent/program',
         qr{exec: WebSocketOption Command: /nonexistent/program: No such file}],
        ['a program not in PATH', 'Command no-such-program-here',
         qr/exec: WebSocketOption Command: no program no-such-program-here in PATH/],
        ['a program that is not executable', "Command $plain",
         qr/exec: WebSocketOption Command: \Q$plain\E is not an executable file/],
        ['a directory as the program', 'Command /tmp',
         qr{exec: WebSocketOption Command: /tmp is not an executable file}],
        ['a missing Directory', "Command cat\nWebSocketOption Directory /nonexistent",
         qr{exec: WebSocketOption Directory: /nonexistent is not a directory}],
        ['a SetEnv without =', "Command cat\nWebSocketOption SetEnv NOVALUE",
         qr/exec: WebSocketOption SetEnv: "NOVALUE" is not NAME=value/],
        ['a PassEnv that is no name', "Command cat\nWebSocketOption PassEnv 1BAD",
         qr/exec: WebSocketOption PassEnv: "1BAD" is not a variable name/],
    );
    for my $case (@cases) {
        my ($name, $options, $want) = @$case;
        open my $conf, '>', "$dir/httpd.conf" or die "$dir/httpd.conf: $!";
        print $conf <<"CONF";
ServerRoot "$dir"
ServerName 127.0.0.1
Listen 127.0.0.1:1
PidFile "$dir/httpd.pid"
ErrorLog "$dir/error_log"
LoadModule mpm_event_module "$mpm"
LoadModule websocket_module "$serverroot/../.libs/mod_websocket.so"
<Location /ws>
    SetHandler websocket-handler
    WebSocketHandler "$serverroot/../modules/exec/.libs/mod_websocket_exec.so" exec_init
    WebSocketOption $options
</Location>
CONF
        close $conf;
        my $out = `"$httpd" -t -d "$dir" -f "$dir/httpd.conf" 2>&1`;
        my $status = $? >> 8;
        if (defined $want) {
            isnt $status, 0, "httpd -t: $name fails";
            like $out, $want, "httpd -t: $name: the reason" or diag $out;
        }
        else {
            is $status, 0, "httpd -t: $name passes" or diag $out;
            like $out, qr/Syntax OK/, "httpd -t: $name: Syntax OK";
        }
    }
}

# ---------------------------------------------------------------------
# graceful restart (5 tests): every program ends with its httpd child,
# also one that ignores SIGTERM where CloseTimeout (60 s) would come far
# too late
{
    my $before = exec_procs();
    my $slow = ws('/exec-slow?mode=ignore-term');
    my $noread = ws('/exec-helper?mode=no-read');
    my $cat = ws('/exec-cat');
    my @pids = (helper_pid($slow), helper_pid($noread));
    Time::HiRes::sleep(0.3);
    push @pids, new_cats($before);
    is scalar(grep { $_ } @pids), 3, 'three programs run';
    ok kill('USR1', httpd_parent_pid()), 'graceful restart';
    my @codes = map { (closed($_, 10))[0] // 'none' } $slow, $noread, $cat;
    is "@codes", '1001 1001 1001', 'each client gets 1001';
    $_->send(ws_close(1001)) for $slow, $noread, $cat;
    my @left = wait_gone(10, grep { $_ } @pids);
    is "@left", '', 'every program has ended and been reaped'
        or diag join ', ', map { "$_: " . join(' ', proc_stat($_)) } @left;
    my ($ok, $deadline) = (0, Time::HiRes::time() + 10);
    while (!$ok && Time::HiRes::time() < $deadline) {
        my $c = WSTest->open6455(path => '/exec-cat');
        if ($c) {
            $c->send(ws_text('after the restart'));
            $ok = (text($c) // '') eq 'after the restart';
        }
        Time::HiRes::sleep(0.2) unless $ok;
    }
    ok $ok, 'after the restart cat answers again';
}
