/**
 * The AWS SDK warns once per process that its releases after January 2027 need Node 22; under jest that is once per
 * test file (and per child process), which buries what a failing file says. Tests only: the platform itself still
 * warns. The switch is the SDK's own (@aws-sdk/core, emitWarningIfUnsupportedVersion).
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
