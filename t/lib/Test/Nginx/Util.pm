package Test::Nginx::Util;

# Server-side plumbing of our Test::Nginx-compatible harness: settings
# (environment variables and the configuration functions such as workers()
# / master_on() / log_level()), the server root, nginx.conf, starting and
# stopping nginx, and reading the logs.
#
# The HTTP client side and the per-block expectations live in
# Test::Nginx::Socket.  See the POD there for what is supported.
#
# This is an independent implementation written to behave like the
# openresty/test-nginx harness (Test::Nginx 0.33, lib/ of commit cf245a0)
# wherever a test file could tell the difference; it shares no code with it.

use strict;
use warnings;

use Carp ();
use Exporter ();
use File::Path ();
use File::Spec ();
use IO::Socket::INET ();
use POSIX ();
use Test::More ();
use Time::HiRes ();

our @ISA = ('Exporter');

# What Test::Nginx::Socket re-exports to the test files (the same names as
# the real module's Socket.pm exports; no variables).
our @EXPORT = qw(
    env_to_nginx is_str repeat_each config_preamble worker_connections
    master_process_enabled no_long_string workers master_on master_off
    log_level no_shuffle no_root_location use_hup server_name server_addr
    server_root html_dir server_port server_port_for_client timeout
    no_nginx_manager check_accum_error_log add_block_preprocessor bail_out
    add_test_cleanup_handler add_cleanup_handler
);

# Internals used by Test::Nginx::Socket.
our @EXPORT_OK = qw(
    expand_env_in_text parse_time slurp_file sleep_time find_nginx_binary
    nginx_version setup_server_root write_user_files write_config_file
    start_nginx stop_nginx nginx_alive read_pid error_log_data
    access_log_data reset_error_log_pos cleanup cleanup_test
    unsupported_env_warnings
    $NoNginxManager $CheckAccumErrLog $NoShuffle $ForceRestartOnTest
    $RepeatEach $NoLongString $ServerPort $ServerPortForClient $ServerAddr
    $ServerName $Timeout $LogLevel $ServRoot $HtmlDir $ErrLogFile
    $AccLogFile $PidFile $ConfFile $NginxBinary $Verbose
    @BlockPreprocessors @TestCleanupHandlers
);

# ---------------------------------------------------------------------------
# Settings (environment variables first, as in the real harness)
# ---------------------------------------------------------------------------

our $NginxBinary = $ENV{TEST_NGINX_BINARY} || 'nginx';

our $ServerAddr = '127.0.0.1';
our $ServerName = 'localhost';
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                  || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;

our $ServRoot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT}
                                    || File::Spec->catdir('t', 'servroot'));
# Like the real harness: exported at load time (TEST_NGINX_SERVER_PORT is
# set by run_tests() when missing; TEST_NGINX_HTML_DIR is never set: files
# that use it set it themselves from html_dir()).
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = File::Spec->catdir($ServRoot, 'logs');
our $HtmlDir    = File::Spec->catdir($ServRoot, 'html');
our $ConfDir    = File::Spec->catdir($ServRoot, 'conf');
our $CacheDir   = File::Spec->catdir($ServRoot, 'cache');
our $ConfFile   = File::Spec->catfile($ConfDir, 'nginx.conf');
our $PidFile    = File::Spec->catfile($LogDir, 'nginx.pid');
our $ErrLogFile = File::Spec->catfile($LogDir, 'error.log');
our $AccLogFile = File::Spec->catfile($LogDir, 'access.log');

our $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $Sleep             = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcess     = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $NoShuffle         = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $CheckAccumErrLog  = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $NoNginxManager    = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $ForceRestartOnTest = defined $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST}
                          ? $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} : 1;
our $WorkerUser        = $ENV{TEST_NGINX_WORKER_USER};
our $EventType         = $ENV{TEST_NGINX_EVENT_TYPE};
our $Verbose           = $ENV{TEST_NGINX_VERBOSE};

if (defined $WorkerUser && $WorkerUser !~ /^\w[-\w]+(?:\s+\w[-\w]+)?$/) {
    die "Bad value in the env TEST_NGINX_WORKER_USER: $WorkerUser\n";
}

our $RepeatEach        = 1;
our $Workers           = 1;
our $WorkerConnections = 64;
our $NoLongString      = 0;
our $NoRootLocation    = 0;
our $ConfigPreamble    = '';
our @EnvToNginx;
our @CleanupHandlers;
our @TestCleanupHandlers;
our @BlockPreprocessors;

# Testing modes of the real harness this one does not have.  They are
# reported once (unsupported_env_warnings) and otherwise ignored.
my @UnsupportedEnv = qw(
    TEST_NGINX_USE_HUP TEST_NGINX_USE_VALGRIND TEST_NGINX_USE_STAP
    TEST_NGINX_CHECK_LEAK TEST_NGINX_BENCHMARK TEST_NGINX_USE_HTTP2
    TEST_NGINX_USE_HTTP3 TEST_NGINX_RANDOMIZE TEST_NGINX_USE_RR
    TEST_NGINX_POSTPONE_OUTPUT
);

sub unsupported_env_warnings {
    for my $v (@UnsupportedEnv) {
        Test::More::diag("$v is not supported by this harness (t/lib):"
                         . " ignored")
            if $ENV{$v};
    }
}

# ---------------------------------------------------------------------------
# Configuration functions
# ---------------------------------------------------------------------------

sub repeat_each {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub workers            { $Workers = shift if @_; return $Workers }
sub worker_connections { $WorkerConnections = shift if @_;
                         return $WorkerConnections }
sub master_on          { $MasterProcess = 'on' }
sub master_off         { $MasterProcess = 'off' }

sub master_process_enabled {
    $MasterProcess = $_[0] ? 'on' : 'off' if @_;
    return $MasterProcess;
}

sub log_level        { $LogLevel = shift if @_; return $LogLevel }
sub no_long_string   { $NoLongString = 1 }
sub no_root_location { $NoRootLocation = 1 }
sub no_shuffle       { $NoShuffle = 1 }
sub no_nginx_manager { $NoNginxManager = 1 }
sub check_accum_error_log { $CheckAccumErrLog = 1 }
sub config_preamble  { $ConfigPreamble = shift }
sub server_name      { $ServerName = shift if @_; return $ServerName }
sub server_addr      { $ServerAddr = shift if @_; return $ServerAddr }
sub server_port      { $ServerPort = shift if @_; return $ServerPort }
sub server_port_for_client { $ServerPortForClient = shift if @_;
                             return $ServerPortForClient }
sub server_root      { return $ServRoot }
sub html_dir         { return $HtmlDir }
sub timeout          { $Timeout = shift if @_; return $Timeout }
sub sleep_time       { return $Sleep }

# The real harness then reloads nginx with HUP between blocks (master on);
# here every block still gets a restarted nginx, with the master process.
sub use_hup { $MasterProcess = 'on' }

sub env_to_nginx {
    Carp::croak("env_to_nginx: no arguments specified") unless @_;
    for my $v (@_) {
        Carp::croak("env_to_nginx: bad argument value: $v\n")
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

# Handlers registered later run first (as in the real harness).
sub add_block_preprocessor {
    my $code = shift;
    Carp::croak("add_block_preprocessor: code reference expected")
        unless ref $code eq 'CODE';
    unshift @BlockPreprocessors, $code;
}

sub add_cleanup_handler      { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler { unshift @TestCleanupHandlers, shift }

sub bail_out {
    my $msg = join '', @_;
    cleanup();
    Test::More::BAIL_OUT($msg);
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

sub _printable {
    my $s = shift;
    return $s =~ /\A[\x09\x0a\x0d\x20-\x7e]*\z/;
}

sub _hex_excerpt {
    my ($s, $off) = @_;
    my $start = $off > 16 ? $off - 16 : 0;
    my $hex = join ' ', map { sprintf '%02x', ord } split //,
                                                 substr($s, $start, 48);
    return "at $start: $hex";
}

# String comparison for long and binary strings: on failure it reports the
# lengths and the first differing offset instead of dumping both.  A Regexp
# "expected" does a like() instead.  Same pass/fail as the real is_str.
sub is_str {
    my ($got, $expected, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $name);
    }
    if (!defined $got || !defined $expected) {
        return Test::More::is($got, $expected, $name);
    }
    if ($got eq $expected) {
        return Test::More::pass($name);
    }
    if ($NoLongString || (length($got) + length($expected) < 4000
                          && _printable($got) && _printable($expected)))
    {
        return Test::More::is($got, $expected, $name);
    }
    my $i = 0;
    my $min = length($got) < length($expected) ? length($got)
                                               : length($expected);
    $i++ while $i < $min && substr($got, $i, 1) eq substr($expected, $i, 1);
    Test::More::fail($name);
    Test::More::diag(sprintf(
        "    got length %d, expected length %d, first difference at"
        . " offset %d\n    got      %s\n    expected %s",
        length($got), length($expected), $i,
        _hex_excerpt($got, $i), _hex_excerpt($expected, $i)));
    return 0;
}

sub diag_verbose { Test::More::diag(@_) if $Verbose }

# Ports for $TEST_NGINX_RAND_PORT_N, per block.
our %RandPorts;

sub _free_port {
    my %used = map { $_ => 1 } $ServerPort, values %RandPorts;
    for (1 .. 100) {
        my $sock = IO::Socket::INET->new(LocalAddr => $ServerAddr,
                                         LocalPort => 0, Proto => 'tcp',
                                         Listen => 1, ReuseAddr => 1)
            or next;
        my $port = $sock->sockport;
        close $sock;
        return $port unless $used{$port};
    }
    return undef;
}

# Replace $TEST_NGINX_FOO with $ENV{TEST_NGINX_FOO}; an undefined variable
# bails out.  Only the "$NAME" form (no "${NAME}"), as in the real harness.
sub expand_env_in_text {
    my ($text, $name) = @_;
    return $text unless defined $text && !ref $text;
    $name = '' unless defined $name;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $val = $RandPorts{$var} //= _free_port()
                // bail_out("$name - Cannot find an available listening"
                            . " port number for $var.\n");
        } else {
            bail_out("$name - No environment $var defined.\n")
                unless defined $ENV{$var};
            $val = $ENV{$var};
        }
        $val;
    }ge;
    return $text;
}

# "1.5" and "2s" are seconds, "50ms" milliseconds; undef stays undef.
sub parse_time {
    my $t = shift;
    return undef unless defined $t;
    if ($t =~ /^\s*(\d+(?:\.\d*)?|\.\d+)\s*ms\s*$/) {
        return $1 / 1000;
    }
    if ($t =~ /^\s*(\d+(?:\.\d*)?|\.\d+)\s*s?\s*$/) {
        return $1 + 0;
    }
    return $t;
}

sub slurp_file {
    my $file = shift;
    open my $in, '<:raw', $file or return undef;
    local $/;
    my $data = <$in>;
    close $in;
    return defined $data ? $data : '';
}

# Whether process $pid is gone or a zombie ("kill 0" succeeds on zombies).
sub process_gone {
    my $pid = shift;
    my $stat = slurp_file("/proc/$pid/stat");
    if (defined $stat) {
        return $stat =~ /\)\s+([ZXx])\s/ ? 1 : 0;
    }
    return 1 if -d '/proc/self';
    return kill(0, $pid) ? 0 : 1;
}

sub read_pid {
    my $pid = slurp_file($PidFile);
    return undef unless defined $pid && $pid =~ /(\d+)/;
    return $1;
}

my $NginxVersion;
sub nginx_version {
    return $NginxVersion if defined $NginxVersion;
    my $out = `\Q$NginxBinary\E -v 2>&1`;
    $NginxVersion = defined $out && $out =~ m{nginx/(\d+)\.(\d+)\.(\d+)}
                    ? $1 * 1000000 + $2 * 1000 + $3 : 0;
    return $NginxVersion;
}

my $NginxV;
sub nginx_V {
    $NginxV = `\Q$NginxBinary\E -V 2>&1` // '' unless defined $NginxV;
    return $NginxV;
}

sub find_nginx_binary {
    if ($NginxBinary =~ m{/}) {
        return -f $NginxBinary && -x _ ? $NginxBinary : undef;
    }
    for my $dir ((split /:/, ($ENV{PATH} || '')), '.') {
        next unless length $dir;
        my $f = File::Spec->catfile($dir, $NginxBinary);
        return $f if -f $f && -x _;
    }
    return undef;
}

# ---------------------------------------------------------------------------
# Server root
# ---------------------------------------------------------------------------

# Recreate the server root: conf/, logs/, html/ (with an index.html), and
# nothing else (cache and *_temp / *_cache dirs go).  As in the real harness,
# anything else left in the server root stops the run: it is not ours to
# delete.
sub setup_server_root {
    if (-d $ServRoot) {
        File::Path::rmtree([$ConfDir, $CacheDir, $HtmlDir, $LogDir,
                            glob("$ServRoot/*_cache"),
                            glob("$ServRoot/*_temp")]);
        rmdir $ServRoot
            or bail_out("Can't remove $ServRoot (not empty?): $!");
    }
    for my $dir ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        mkdir $dir or bail_out("Failed to do mkdir $dir: $!\n");
    }
    my $index = File::Spec->catfile($HtmlDir, 'index.html');
    open my $out, '>', $index
        or bail_out("Can't open $index for writing: $!\n");
    print $out '<html><head><title>It works!</title></head>'
               . '<body>It works!</body></html>';
    close $out;
}

# Create the files of a "--- user_files" section: the text form (">>> name
# [touch -t date]" lines, each starting a file) or, from "eval", an array
# ref of [name, content, date?].  Relative names are under the html dir.
# $TEST_NGINX_* is expanded in every content (as the real harness does).
sub write_user_files {
    my $block = shift;
    my $name = $block->name;
    my $spec = $block->user_files;
    return unless $spec;

    my @files;
    if (!ref $spec) {
        my $cur;
        for my $line (split /^/m, $spec) {
            if ($line =~ />>> (\S+)(?:\s+(.+))?/) {
                $cur = [$1, undef, $2];
                push @files, $cur;
            } elsif ($cur) {
                $cur->[1] .= $line;
            }
        }
    } elsif (ref $spec eq 'ARRAY') {
        @files = map { [@$_] } @$spec;
    } else {
        bail_out("$name - wrong value type: " . ref($spec)
                 . ", only scalar or ARRAY are accepted");
    }

    for my $f (@files) {
        my ($fname, $body, $date) = @$f;
        $body = '' unless defined $body;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/}) {
            my $dir = $1;
            File::Path::mkpath($dir) unless -d $dir;
            -d $dir or bail_out("$name - Cannot create directory $dir");
        }
        $body = expand_env_in_text($body, $name);
        open my $out, '>:raw', $path
            or bail_out("$name - Cannot open $path for writing: $!\n");
        print $out $body;
        close $out;
        if ($date) {
            local $ENV{TZ} = 'GMT';
            system('touch', '-t', $date, $path) == 0
                or bail_out("Failed to run shell command: touch -t $date"
                            . " $path\n");
        }
    }
}

# ---------------------------------------------------------------------------
# nginx.conf
# ---------------------------------------------------------------------------

# TEST_NGINX_LOAD_MODULES: space separated .so paths.  Unlike the real
# harness (which writes them as given, i.e. relative to the server root),
# relative paths are taken relative to the current directory.
sub load_module_directives {
    my $mods = $ENV{TEST_NGINX_LOAD_MODULES};
    return () unless defined $mods;
    return map { "load_module " . File::Spec->rel2abs($_) . ";" }
           grep { length } split /\s+/, $mods;
}

# Writes nginx.conf for $block with the (already expanded) server config
# $config.  The layout is that of the real harness: the same directives in
# the same order.
sub write_config_file {
    my ($block, $config) = @_;
    my $name = $block->name;

    my $http_config = expand_env_in_text($block->http_config // '', $name);
    my $main_config = $block->main_config // '';
    if (my @mods = load_module_directives()) {
        $main_config = join ' ', @mods, $main_config;
    }
    $main_config = expand_env_in_text($main_config, $name);
    my $post_main = expand_env_in_text($block->post_main_config // '',
                                       $name);
    my $err_log = expand_env_in_text($block->error_log_file || $ErrLogFile,
                                     $name);
    my $server_name = $block->server_name // $ServerName;
    my $log_level = $block->log_level || $LogLevel;
    $config = '' unless defined $config;

    my $V = nginx_V();
    my @temp;
    push @temp, "client_body_temp_path $ServRoot/client_body_temp;"
        unless $http_config =~ /\bclient_body_temp_path\b/;
    push @temp, "proxy_temp_path $ServRoot/proxy_temp;"
        unless $http_config =~ /\bproxy_temp_path\b/;
    for my $m (qw(fastcgi scgi uwsgi)) {
        push @temp, "${m}_temp_path $ServRoot/${m}_temp;"
            unless $V =~ /--without-http_${m}_module/;
    }

    my $env = '';
    for my $v (qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN
                  MOCKEAGAIN_WRITE_TIMEOUT_PATTERN LD_PRELOAD LD_LIBRARY_PATH
                  DYLD_INSERT_LIBRARIES DYLD_FORCE_FLAT_NAMESPACE),
               @EnvToNginx)
    {
        $env .= $v =~ /\s/ ? "env '$v';\n" : "env $v;\n";
    }

    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    my $use_events = $EventType ? "    use $EventType;\n" : '';
    my $user = defined $WorkerUser ? "user $WorkerUser;\n"
             : $> == 0             ? "user root;\n"
             :                       '';

    my $conf = <<"_EOC_";
worker_processes  $Workers;
daemon on;
master_process $MasterProcess;
error_log $err_log $log_level;
pid       $PidFile;
$env
$main_config

http {
    access_log $AccLogFile; @temp

    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config
    server {
        listen          $ServerPort;
        server_name     '$server_name';
        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

$post_main

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
$use_events}
env ASAN_OPTIONS;
env MOCKNOEAGAIN_VERBOSE;
env MOCKNOEAGAIN;
$user
_EOC_

    open my $out, '>', $ConfFile
        or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out $conf;
    close $out;
}

# ---------------------------------------------------------------------------
# Starting / stopping nginx
# ---------------------------------------------------------------------------

# Set once this process has started an nginx: only then does cleanup stop
# the nginx named by the pid file.
our $StartedNginx = 0;

sub nginx_command {
    my @cmd = ($NginxBinary);
    # -e (nginx >= 1.19.5): errors before error_log is read go to our log.
    push @cmd, '-e', $ErrLogFile if nginx_version() >= 1019005;
    push @cmd, '-p', "$ServRoot/", '-c', $ConfFile;
    return @cmd;
}

# What nginx wrote to stderr when it was last run (what it logs at startup
# goes to error.log as well, thanks to -e).
our $StartStderr = '';

# Runs nginx (daemon on), its stdout to /dev/null.  Its stderr is kept in
# $StartStderr (the real harness lets it through to the terminal: the
# "nginx: [emerg] ..." of every must_die block).  Returns the wait status.
sub run_nginx {
    my @cmd = nginx_command();
    diag_verbose("starting: @cmd");
    my $errfile = File::Spec->catfile($LogDir, 'nginx.stderr');
    my $pid = fork;
    bail_out("fork() failed: $!") unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', $errfile;
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        print STDERR "exec $cmd[0] failed: $!\n";
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $status = $?;
    $StartStderr = slurp_file($errfile) // '';
    unlink $errfile;
    diag_verbose("nginx: $StartStderr") if length $StartStderr;
    return $status;
}

# Start nginx.  Returns the wait status of the nginx command (0: started;
# then the daemon's pid file has been written).
sub start_nginx {
    unlink $PidFile;
    $StartedNginx = 1;
    my $status = run_nginx();
    return $status if $status != 0;
    my $deadline = Time::HiRes::time() + 5;
    while (!defined read_pid() && Time::HiRes::time() < $deadline) {
        Time::HiRes::sleep(0.005);
    }
    Time::HiRes::sleep($Sleep);
    return 0;
}

# Stop the nginx the pid file names: QUIT (graceful, TERM with
# TEST_NGINX_FAST_SHUTDOWN), wait up to timeout(), then KILL.
sub stop_nginx {
    my $pid = read_pid();
    return 1 unless defined $pid;
    if (process_gone($pid)) {
        unlink $PidFile;
        return 1;
    }
    for my $sig ($ENV{TEST_NGINX_FAST_SHUTDOWN} ? 'TERM' : 'QUIT', 'KILL') {
        diag_verbose("sending $sig to $pid");
        kill $sig, $pid;
        my $deadline = Time::HiRes::time() + ($sig eq 'KILL' ? 2 : $Timeout);
        while (Time::HiRes::time() < $deadline) {
            if (process_gone($pid)) {
                unlink $PidFile;
                return 1;
            }
            Time::HiRes::sleep(0.01);
        }
        warn "timeout when waiting for the nginx process $pid to exit\n"
            unless $sig eq 'KILL';
    }
    unlink $PidFile;
    return 0;
}

sub nginx_alive {
    my $pid = read_pid();
    return defined $pid && !process_gone($pid);
}

# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------

# Where the next error_log_data() starts reading (reset before a block's
# requests; every read moves it to the end unless check_accum_error_log).
our $ErrLogFilePos = 0;

sub reset_error_log_pos { $ErrLogFilePos = 0 }

# The lines of error.log written since the last read (all of them with
# check_accum_error_log), after a short sleep for what nginx logs once the
# response is out (the log phase).
sub error_log_data {
    Time::HiRes::sleep($Sleep * 3);
    open my $in, '<', $ErrLogFile or return undef;
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos > 0;
    my @lines = <$in>;
    $ErrLogFilePos = tell $in unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub access_log_data {
    Time::HiRes::sleep($Sleep * 3);
    open my $in, '<', $AccLogFile or die "open $AccLogFile failed: $!";
    my @lines = <$in>;
    close $in;
    return \@lines;
}

# ---------------------------------------------------------------------------
# Cleanup
# ---------------------------------------------------------------------------

sub cleanup_test {
    my $block = shift;
    $_->($block) for @TestCleanupHandlers;
}

sub cleanup {
    for my $h (@CleanupHandlers) {
        eval { $h->() };
        warn "cleanup handler failed: $@" if $@;
    }
}

END {
    # Keep the test's exit status: cleanup must not clobber $?.
    local $?;
    cleanup();
    if ($StartedNginx && !$ENV{TEST_NGINX_NO_CLEAN} && !$NoNginxManager) {
        stop_nginx();
    }
}

1;
